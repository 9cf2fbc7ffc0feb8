"""The guarded readers (hftransfer/files/readers.py), property-tested: every broken file of each kind (generated) is
refused with one line naming the file, never a library's traceback; whole files read as they are."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from conftest import refused
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from hftransfer.files import readers

settings.register_profile("hftransfer", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("hftransfer")
FIXTURE = [HealthCheck.function_scoped_fixture]


# --- label maps -----------------------------------------------------------------------------------------------------

names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=8).filter(str.strip)


@given(labels=st.lists(names, min_size=1, max_size=12, unique=True))
def test_consistent_label_maps_give_the_names_in_id_order(labels):
    config = {"id2label": {str(i): n for i, n in enumerate(labels)}, "label2id": {n: i for i, n in enumerate(labels)}}
    assert readers.label_names(config, "config.json") == labels


@given(labels=st.lists(names, min_size=2, max_size=12), data=st.data())
def test_a_name_given_to_two_ids_is_refused(labels, data):
    twice = data.draw(st.sampled_from(labels))
    labels = [*labels, twice]
    config = {"id2label": {str(i): n for i, n in enumerate(labels)}}
    refused(lambda: readers.label_names(config, "config.json"), "config.json", "more than one class id")


@given(
    id2label=st.one_of(
        st.lists(names, min_size=1),  # a list, not a mapping
        st.dictionaries(st.text(min_size=1).filter(lambda k: not k.strip().lstrip("-").isdigit()), names, min_size=1),
        st.dictionaries(st.integers(1, 50).map(str), names, min_size=1),  # ids that do not start at 0
        st.dictionaries(st.just("0"), st.one_of(st.integers(), st.just(""), st.none()), min_size=1),
    )
)
def test_malformed_id2label_is_refused_in_one_line(id2label):
    refused(lambda: readers.label_names({"id2label": id2label}, "run/config.json"), "run/config.json")


@given(labels=st.lists(names, min_size=2, max_size=6, unique=True), shift=st.integers(1, 5))
def test_a_label2id_that_is_not_the_inverse_is_refused(labels, shift):
    config = {
        "id2label": {str(i): n for i, n in enumerate(labels)},
        "label2id": {n: (i + shift) % (len(labels) + 1) for i, n in enumerate(labels)},
    }
    if all(config["label2id"][n] == i for i, n in enumerate(labels)):
        return
    refused(lambda: readers.label_names(config, "c.json"), "label2id", "inverse")


# --- safetensors ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def weights_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("w") / "model.safetensors"
    save_file({"a": torch.ones(4, 3), "b": torch.zeros(7)}, path)
    return path.read_bytes()


@given(cut=st.integers(min_value=0, max_value=10_000))
@settings(suppress_health_check=FIXTURE)
def test_a_cut_short_safetensors_file_is_refused(weights_bytes, tmp_path, cut):
    path = tmp_path / "model.safetensors"
    path.write_bytes(weights_bytes[: cut % len(weights_bytes)])
    refused(lambda: readers.check_safetensors(path), "model.safetensors")


@given(junk=st.binary(max_size=200))
@settings(suppress_health_check=FIXTURE)
def test_bytes_that_are_no_safetensors_file_are_refused(tmp_path, junk):
    path = tmp_path / "model.safetensors"
    path.write_bytes(junk)
    refused(lambda: readers.check_safetensors(path), "model.safetensors")


def test_a_whole_safetensors_file_passes(weights_bytes, tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(weights_bytes)
    readers.check_safetensors(path)


# --- text lists, JSON and YAML settings -----------------------------------------------------------------------------


@given(data=st.binary(min_size=1, max_size=200).filter(lambda b: b"\x00" in b or not _utf8(b)))
@settings(suppress_health_check=FIXTURE)
def test_binary_or_foreign_text_files_are_refused(tmp_path, data):
    path = tmp_path / "list.txt"
    path.write_bytes(data)
    refused(lambda: readers.text_lines(path, "--exclude_file"), "--exclude_file", "list.txt")


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def test_files_that_are_not_regular_files_say_what_they_are(tmp_path):
    refused(lambda: readers.text_lines("/dev/null", "--text_file"), "--text_file '/dev/null'", "not a regular file")
    refused(lambda: readers.text_lines(tmp_path, "--text_file"), "is a folder")
    refused(lambda: readers.text_lines(tmp_path / "missing.txt", "--unlabeled_file"), "--unlabeled_file", "not found")
    (tmp_path / "empty.txt").write_text("\n  \n")
    refused(lambda: readers.text_lines(tmp_path / "empty.txt", "--text_file"), "is empty")
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    refused(lambda: readers.text_lines(tmp_path / "link", "--text_file"), "symbolic link to a missing file")


@given(value=st.one_of(st.lists(st.integers()), st.integers(), st.text(), st.none(), st.booleans()))
@settings(suppress_health_check=FIXTURE)
def test_json_settings_that_are_not_an_object_are_refused(tmp_path, value):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(value))
    refused(lambda: readers.json_object(path), "config.json")


@given(text=st.text(max_size=50).filter(lambda t: t.strip() and not t.strip().startswith(("{", "[", '"'))))
@settings(suppress_health_check=FIXTURE)
def test_text_that_is_not_json_is_refused(tmp_path, text):
    path = tmp_path / "config.json"
    path.write_text(text + " }", encoding="utf-8")
    refused(lambda: readers.json_object(path), "config.json")


@pytest.mark.parametrize("text", ["- a\n- b\n", "just words", "!!python/object:os.system {}\n", "a: [1\n", "42"])
def test_yaml_settings_that_are_not_a_mapping_are_refused(tmp_path, text):
    path = tmp_path / "accelerate.yaml"
    path.write_text(text)
    refused(lambda: readers.yaml_mapping(path, "--accelerate_config"), "--accelerate_config", "accelerate.yaml")


def test_a_password_file_is_no_accelerate_config():
    refused(lambda: readers.yaml_mapping("/etc/passwd", "--accelerate_config"), "not a mapping")


# --- pickles and ONNX -----------------------------------------------------------------------------------------------


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_that_runs_code_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "PWNED"
    torch.save({"state": _Payload(marker)}, tmp_path / "optimizer.pt")
    refused(lambda: readers.torch_file(tmp_path / "optimizer.pt"), "optimizer.pt", "refused")
    assert not marker.exists()


@given(cut=st.integers(min_value=0, max_value=400))
@settings(suppress_health_check=FIXTURE, max_examples=30)
def test_a_cut_short_torch_file_is_refused(tmp_path, cut):
    whole = tmp_path / "whole.pt"
    torch.save({"step": torch.arange(50)}, whole)
    data = whole.read_bytes()
    path = tmp_path / "scheduler.pt"
    path.write_bytes(data[: cut % len(data)])
    refused(lambda: readers.torch_file(path), "scheduler.pt")


@given(junk=st.binary(max_size=300))
@settings(suppress_health_check=FIXTURE, max_examples=30)
def test_bytes_that_are_no_onnx_model_are_refused(tmp_path, junk):
    pytest.importorskip("onnxruntime")
    path = tmp_path / "model.onnx"
    path.write_bytes(junk)
    refused(lambda: readers.onnx_session(path), "model.onnx", "export it again")


def test_paths_that_cannot_be_looked_up_are_refused(tmp_path):
    refused(lambda: readers.text_lines(tmp_path / ("n" * 300), "--text_file"), "--text_file", "too long")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    refused(lambda: readers.utf8_text(tmp_path / "loop", "exclude_file"), "exclude_file", "symbolic links")

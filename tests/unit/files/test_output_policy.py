"""The output policy (hftransfer/files/output_policy.py), property-tested: for generated folders of the user's files,
outputs and inputs, a destination is refused exactly when writing there could replace a file hftransfer did not
write, mix with what the command reads, or cannot be done; the refusal names the flag and changes nothing."""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

from conftest import refused
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hftransfer.files.output_policy import Input, Output, check_output
from hftransfer.files.written import record_entries
from hftransfer.training.run_files import RUN_WRITES

settings.register_profile("hftransfer", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("hftransfer")
FIXTURE = [HealthCheck.function_scoped_fixture]
USER_NAMES = ["README.md", "config.json", "notes.txt", "model.safetensors", "my_results.json", "plot.png", "data.csv"]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@given(users=st.sets(st.sampled_from(USER_NAMES)), ours=st.sets(st.sampled_from(USER_NAMES)))
@settings(suppress_health_check=FIXTURE, max_examples=60)
def test_a_folder_is_refused_exactly_when_a_user_file_bears_a_name_the_run_writes(tmp_path_factory, users, ours):
    folder = tmp_path_factory.mktemp("out")
    for name in users | ours:
        (folder / name).write_text(f"{name} of somebody")
    record_entries(folder, *ours)
    before = snapshot(folder)
    clashing = {n for n in users - ours if any(fnmatch.fnmatchcase(n, p) for p in RUN_WRITES)}
    output = Output("output_dir", folder, writes=RUN_WRITES)
    if clashing:
        message = refused(lambda: check_output(output), "output_dir", "hftransfer did not write")
        assert all(name in message for name in sorted(clashing)[:5])
    else:
        check_output(output)
    assert snapshot(folder) == before


@given(relation=st.sampled_from(["same", "inside", "contains", "apart"]), inside_ok=st.booleans())
@settings(suppress_health_check=FIXTURE, max_examples=40)
def test_an_output_is_never_an_input_nor_inside_or_around_one(tmp_path_factory, relation, inside_ok):
    root = tmp_path_factory.mktemp("io")
    source = root / "data" / "photos"
    source.mkdir(parents=True)
    (source / "cat.jpg").write_bytes(b"jpg")
    out = {
        "same": source,
        "inside": source / "run",
        "contains": root / "data",
        "apart": root / "elsewhere",
    }[relation]
    given_input = Input("data_dir", source, outputs_inside=inside_ok)
    if relation == "apart" or (relation == "inside" and inside_ok):
        check_output(Output("output_dir", out), [given_input])
    else:
        refused(lambda: check_output(Output("output_dir", out), [given_input]), "output_dir", "data_dir", "reads")
    assert (source / "cat.jpg").read_bytes() == b"jpg"


def test_a_file_output_is_checked_against_the_files_read(tmp_path):
    texts = tmp_path / "texts.csv"
    texts.write_text("text\na good film\n")
    refused(
        lambda: check_output(Output("--output", texts, folder=False), [Input("--csv", texts)]),
        "--output",
        "is the same path as --csv",
    )
    assert texts.read_text() == "text\na good film\n"


def test_links_that_loop_or_point_nowhere_are_refused(tmp_path):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    refused(lambda: check_output(Output("output_dir", tmp_path / "loop")), "output_dir", "symbolic link loop")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    refused(lambda: check_output(Output("output_dir", tmp_path / "dangling")), "symbolic link to", "does not exist")
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    check_output(Output("output_dir", tmp_path / "link"))  # a link to a folder is a folder


@given(length=st.integers(min_value=256, max_value=600))
@settings(suppress_health_check=FIXTURE, max_examples=10)
def test_names_over_the_file_systems_limit_are_refused(tmp_path, length):
    refused(lambda: check_output(Output("--report_dir", tmp_path / ("a" * length))), "--report_dir", "limit of")


def test_a_path_over_the_systems_limit_is_refused(tmp_path):
    deep = tmp_path.joinpath(*["d" * 200] * 25)
    refused(lambda: check_output(Output("output_dir", deep)), "output_dir", "limit of")


def test_kinds_and_permissions(tmp_path):
    (tmp_path / "a-file").write_text("x")
    refused(lambda: check_output(Output("output_dir", tmp_path / "a-file")), "is not a folder")
    refused(lambda: check_output(Output("output_dir", tmp_path / "a-file" / "sub")), "cannot write into")
    refused(lambda: check_output(Output("--fix_suggestions", tmp_path, folder=False)), "is a folder; name a file")
    refused(lambda: check_output(Output("--output", "/dev/null", folder=False)), "not a regular file")
    check_output(Output("--fix_suggestions", tmp_path / "new" / "deeper" / "fixes.csv", folder=False))
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        refused(lambda: check_output(Output("output_dir", locked / "run")), "cannot write into")

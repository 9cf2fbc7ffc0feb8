"""Pushing a finished run to the Hugging Face Hub.

The token comes from the environment (``HF_TOKEN``) or the ``hf auth login`` store, read by
huggingface_hub itself; hftransfer never takes one from a recipe or a flag, so none can end up in a saved
config, a log or a shell history. Only the model's own files are uploaded: no Trainer checkpoints, no
probe folders, no pickled training arguments, nothing hidden.
"""

from __future__ import annotations

import logging
from pathlib import Path

from huggingface_hub import HfApi, get_token
from huggingface_hub.utils import filter_repo_objects

from hftransfer.backbones.checkpoints import read_model_folder
from hftransfer.errors import HftransferError
from hftransfer.training.modelcard import CARD_FILE

logger = logging.getLogger("hftransfer")

# Never uploaded: Trainer checkpoints and logs, pickles, hidden and partial files (a probe's working folder is
# hidden now; probe/ is where runs before the written record kept it, and a leftover one is not uploaded either).
UPLOAD_IGNORE = [
    "checkpoint-*",
    "checkpoint-*/*",
    "**/checkpoint-*/**",
    "probe/*",
    "probe/**",
    "runs/*",
    "runs/**",
    "*.bin",
    "*.pt",
    "*.pth",
    "*.pkl",
    ".*",
    "**/.*",
    "*.partial",
    "eval/**",
]
SECRET_SCAN_LIMIT = 50 << 20  # bytes; larger files are weights, not text that could hold a pasted token


class PushError(HftransferError):
    """A push that cannot or must not happen (not logged in, a secret in the folder, not a model)."""


def resolve_token() -> str:
    token = get_token()  # HF_TOKEN, then the token saved by `hf auth login`
    if not token:
        raise PushError(
            "not logged in to the Hugging Face Hub: run `hf auth login` or set HF_TOKEN "
            "(tokens are never read from recipes or flags)"
        )
    return token


def files_to_upload(folder: str | Path) -> list[str]:
    """The relative paths ``push`` uploads (the same filter ``HfApi.upload_folder`` applies)."""
    root = Path(folder)
    every = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    return list(filter_repo_objects(every, ignore_patterns=UPLOAD_IGNORE))


def check_no_secret(folder: Path, files: list[str], token: str) -> None:
    """Refuse to upload a folder where any file contains the token itself."""
    needle = token.encode()
    for name in files:
        path = folder / name
        if path.stat().st_size <= SECRET_SCAN_LIMIT and needle in path.read_bytes():
            raise PushError(f"{name!r} in {str(folder)!r} contains your Hub token; remove it before pushing")


def push_output_dir(
    folder: str | Path,
    repo_id: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Create the repository if needed and upload the model folder; returns the commit URL."""
    # a folder that is not a model fails here, before anything is uploaded; nothing in it is loaded or run (only
    # uploaded), so code it ships needs no trust here
    root = Path(folder).expanduser()
    read_model_folder(root)
    if not (root / CARD_FILE).is_file():
        raise PushError(
            f"{str(root)!r} has no model card ({CARD_FILE}); push the output_dir of `hftransfer train`, "
            "which writes one"
        )
    repo_id = repo_id or root.resolve().name
    token = resolve_token()
    files = files_to_upload(root)
    check_no_secret(root, files, token)
    api = HfApi(token=token)
    url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    repo_id = getattr(url, "repo_id", None) or repo_id  # "name" becomes "user/name"
    if revision:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    logger.info("uploading %d files from %s to %s", len(files), root, repo_id)
    commit = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(root),
        revision=revision,
        commit_message=commit_message or "Upload model fine-tuned with hftransfer",
        ignore_patterns=UPLOAD_IGNORE,
        repo_type="model",
    )
    return getattr(commit, "commit_url", str(commit))

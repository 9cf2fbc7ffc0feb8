"""``hftransfer push OUTPUT_DIR --repo-id user/name``: upload a finished run to the Hub."""

from __future__ import annotations

import argparse

from hftransfer.training.hub import push_output_dir


def push_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="hftransfer push",
        description=(
            "Upload a finished run (model, processor, card, report, plots; no checkpoints) to the Hub. The token "
            "comes from HF_TOKEN or `hf auth login`."
        ),
    )
    parser.add_argument("model_dir")
    parser.add_argument(
        "--repo-id",
        "--repo_id",
        dest="repo_id",
        default=None,
        help="user/name or org/name (default: the folder's name under your account)",
    )
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--revision", default=None, help="branch to push to (created if needed)")
    parser.add_argument("--commit-message", "--commit_message", dest="commit_message", default=None)
    a = parser.parse_args(argv)
    url = push_output_dir(a.model_dir, a.repo_id, a.private or None, a.revision, a.commit_message)
    print(f"pushed: {url}")
    return 0

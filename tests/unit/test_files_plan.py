"""The filter that spares a rerun the copy of offline models already in place
(plugins/filter/files_plan.py), on community.general.filetree items and ansible.builtin.find
results as those return them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "filter" / "files_plan.py"
_spec = importlib.util.spec_from_file_location("files_plan", _PLUGIN)
files_plan = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(files_plan)

ROOT = "/var/lib/ollama/models"
TREE = [
    {"path": "blobs", "state": "directory", "mode": "0755"},
    {"path": "blobs/sha256-5a36", "state": "file", "mode": "0644", "size": 65},
    {"path": "manifests/registry.ollama.ai/library/standin/1b", "state": "file", "mode": "0644", "size": 412},
]
IN_PLACE = [
    {"path": f"{ROOT}/blobs/sha256-5a36", "size": 65, "pw_name": "ollama", "gr_name": "ollama", "mode": "0640"},
    {"path": f"{ROOT}/manifests/registry.ollama.ai/library/standin/1b", "size": 412, "pw_name": "ollama",
     "gr_name": "ollama", "mode": "0640"},
    {"path": f"{ROOT}/blobs/sha256-pulled", "size": 9, "pw_name": "ollama", "gr_name": "ollama", "mode": "0644"},
]


def test_a_copy_in_place_needs_nothing() -> None:
    assert files_plan.tree_files_out_of_place(TREE, IN_PLACE, ROOT + "/", "ollama", "ollama") == []


@pytest.mark.parametrize("change", [{"size": 64}, {"pw_name": "root"}, {"gr_name": "root"}, {"mode": "0644"}])
def test_a_file_with_another_size_owner_group_or_mode_is_copied_again(change: dict) -> None:
    found = [{**IN_PLACE[0], **change}, *IN_PLACE[1:]]
    assert files_plan.tree_files_out_of_place(TREE, found, ROOT, "ollama", "ollama") == ["blobs/sha256-5a36"]


def test_a_missing_file_is_copied_and_an_executable_one_wants_0750() -> None:
    tree = [*TREE, {"path": "bin/tool", "state": "file", "mode": "0755", "size": 3}]
    found = [*IN_PLACE, {"path": f"{ROOT}/bin/tool", "size": 3, "pw_name": "ollama", "gr_name": "ollama",
                         "mode": "0640"}]
    assert files_plan.tree_files_out_of_place(tree, found, ROOT, "ollama", "ollama") == ["bin/tool"]
    assert files_plan.tree_files_out_of_place(tree, IN_PLACE, ROOT, "ollama", "ollama") == ["bin/tool"]

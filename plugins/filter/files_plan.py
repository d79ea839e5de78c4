"""Which files of a controller folder a host's copy lacks or holds otherwise, from one listing of
each side: a rerun then copies nothing and checksums nothing (the copy module reads the whole of
every file on both sides, minutes for models of several gigabytes)."""

from __future__ import annotations


def tree_files_out_of_place(tree: list[dict], found: list[dict], root: str, owner: str, group: str) -> list[str]:
    """Relative paths of the regular files in `tree` (community.general.filetree items) that
    `found` (ansible.builtin.find's files under `root` on the host) lacks or holds with another
    size, owner, group or mode; the mode wanted is u=rwX,g=rX,o= of the controller's file."""
    on_host = {file["path"]: file for file in found}
    out_of_place = []
    for item in tree:
        if item["state"] != "file":
            continue
        file = on_host.get(f"{root.rstrip('/')}/{item['path']}")
        mode = "0750" if int(str(item["mode"]), 8) & 0o100 else "0640"
        wanted = (item["size"], owner, group, mode)
        if file is None or (file["size"], file["pw_name"], file["gr_name"], file["mode"]) != wanted:
            out_of_place.append(item["path"])
    return out_of_place


class FilterModule:
    def filters(self):
        return {"tree_files_out_of_place": tree_files_out_of_place}

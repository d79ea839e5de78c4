"""What preflight probes of a host's apt sources: each repository's Release file, which answers
where the repository is (a mirror's bare base URL often answers 404 although it serves)."""

from __future__ import annotations

import re

ONE_LINE = re.compile(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(https?://\S+)\s+(\S+)")


def apt_release_urls(sources: str) -> list[str]:
    """InRelease URL of every http(s) repository in one-line (.list) and deb822 (.sources)
    apt sources; a flat repository (suite ending in /) has it beside its packages."""
    urls: list[str] = []
    for line in sources.splitlines():
        match = ONE_LINE.match(line)
        if match:
            urls.append(_release_url(match[1], match[2]))
    for stanza in re.split(r"\n\s*\n", sources):
        fields = dict(re.findall(r"(?m)^(URIs|Suites|Types):\s*(.+)$", stanza))
        if "deb" not in fields.get("Types", "deb").split():
            continue
        for uri in fields.get("URIs", "").split():
            if uri.startswith(("http://", "https://")):
                urls += [_release_url(uri, suite) for suite in fields.get("Suites", "").split()]
    return list(dict.fromkeys(urls))


def _release_url(uri: str, suite: str) -> str:
    if suite.endswith("/"):
        return "/".join(part for part in (uri.rstrip("/"), suite.strip("./")) if part) + "/InRelease"
    return f"{uri.rstrip('/')}/dists/{suite}/InRelease"


class FilterModule:
    def filters(self):
        return {"apt_release_urls": apt_release_urls}

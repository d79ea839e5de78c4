"""Which OpenPGP keys a signing-key file holds, from `gpg --show-keys --with-colons`: the roles
that add an apt repository trust its key only when it is the one pinned by fingerprint."""

from __future__ import annotations


def gpg_primary_fingerprints(colons: str) -> list[str]:
    """The fingerprint of each primary key (a `fpr` record right after a `pub` record), upper
    case; subkeys' fingerprints are left out."""
    fingerprints, after_primary = [], False
    for line in colons.splitlines():
        record = line.split(":")
        if record[0] == "fpr" and after_primary and len(record) > 9:
            fingerprints.append(record[9].upper())
        after_primary = record[0] == "pub"
    return fingerprints


def fingerprint_of(text: str) -> str:
    """A fingerprint as people write it ("9DC8 5822 ...", lower case) in gpg's form."""
    return "".join(str(text).split()).upper()


class FilterModule:
    def filters(self):
        return {"gpg_primary_fingerprints": gpg_primary_fingerprints, "fingerprint_of": fingerprint_of}

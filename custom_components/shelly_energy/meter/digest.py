"""HTTP digest authentication as Gen2+ Shelly devices ask for it (RFC 7616, SHA-256, qop=auth).

Used for the devices' plain HTTP downloads (`/emdata/<id>/data.csv`); RPC calls go through
aioshelly's WebSocket, which authenticates inside its frames. aiohttp's own digest support
arrived after the oldest Home Assistant this integration supports.
"""

from __future__ import annotations

import hashlib
import re
import secrets

_FIELD = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class DigestAuth:
    """Answers a device's digest challenges for one user, counting the requests per nonce."""

    def __init__(self, username: str, password: str) -> None:
        """Authenticate as `username` with `password` once a challenge arrived."""
        self._username = username
        self._password = password
        self._realm: str | None = None
        self._nonce = ""
        self._count = 0

    def challenged(self, header: str | None) -> bool:
        """Take a 401's `WWW-Authenticate` header; return whether it is a usable challenge.

        Only SHA-256 digests with qop=auth are answered (what Shelly devices send).
        """
        if not header or not header.lower().startswith("digest "):
            return False
        fields = {
            name.lower(): quoted if quoted or not bare else bare
            for name, quoted, bare in _FIELD.findall(header[7:])
        }
        if fields.get("algorithm", "SHA-256").upper() != "SHA-256":
            return False
        if "auth" not in fields.get("qop", "").split(","):
            return False
        if not fields.get("realm") or not fields.get("nonce"):
            return False
        self._realm, self._nonce, self._count = fields["realm"], fields["nonce"], 0
        return True

    def authorization(self, method: str, uri: str) -> str | None:
        """Return the `Authorization` header of a request, None before any challenge.

        `uri` is the request target exactly as sent: path and query.
        """
        if self._realm is None:
            return None
        self._count += 1
        count = f"{self._count:08x}"
        cnonce = secrets.token_hex(8)
        ha1 = _sha256(f"{self._username}:{self._realm}:{self._password}")
        ha2 = _sha256(f"{method}:{uri}")
        response = _sha256(f"{ha1}:{self._nonce}:{count}:{cnonce}:auth:{ha2}")
        return (
            f'Digest username="{self._username}", realm="{self._realm}", '
            f'nonce="{self._nonce}", uri="{uri}", algorithm=SHA-256, qop=auth, '
            f'nc={count}, cnonce="{cnonce}", response="{response}"'
        )

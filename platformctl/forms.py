"""The forms values must have beyond their type (argument specs say only "a string"): host
names, networks, ports, image references. Each check returns None for a good value, else
what was expected, in words. FORMS names the options they apply to: a top-level variable,
or a key of a list's items as `variable[].key`."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_HOSTNAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
_APP_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
# [registry[:port]/]path[:tag][@sha256:digest], as docker reads a reference.
_IMAGE = re.compile(
    r"^(?P<name>([a-z0-9.-]+(:[0-9]+)?/)?[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-]+[a-z0-9]+)*)*)"
    r"(:(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(@(?P<digest>sha256:[0-9a-f]{64}))?$")
_URL_PATH = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$")


def hostname(value: Any) -> str | None:
    if isinstance(value, str) and len(value) <= 253 and _HOSTNAME.match(value.lower()):
        return None
    return "a host name (letters, digits, dashes and dots, such as ai.example.com)"


def _parses(parse: Callable[[str], Any], value: Any) -> bool:
    try:
        parse(str(value))
    except ValueError:
        return False
    return True


def network(value: Any) -> str | None:
    ok = _parses(lambda text: ipaddress.ip_network(text, strict=True), value) and "/" in str(value)
    return None if ok else "a network by its network address and prefix length (10.0.0.0/8)"


def address_or_network(value: Any) -> str | None:
    ok = _parses(lambda text: ipaddress.ip_network(text, strict=True), value)
    return None if ok else "an address or a network by its network address (10.0.0.5, 10.0.0.0/8)"


def address(value: Any) -> str | None:
    return None if _parses(ipaddress.ip_address, value) else "an IP address (172.31.0.1)"


def port(value: Any) -> str | None:
    return None if isinstance(value, int) and 1 <= value <= 65535 else "a port number from 1 to 65535"


def port_or_zero(value: Any) -> str | None:
    return None if isinstance(value, int) and 0 <= value <= 65535 else "0 or a port number up to 65535"


def positive(value: Any) -> str | None:
    return None if isinstance(value, int) and value >= 1 else "an integer of 1 or more"


def not_negative(value: Any) -> str | None:
    return None if isinstance(value, int) and value >= 0 else "an integer of 0 or more"


def app_name(value: Any) -> str | None:
    if isinstance(value, str) and _APP_NAME.match(value):
        return None
    return "lower-case letters, digits and dashes, at most 40, starting and ending with a letter or digit"


def image(value: Any) -> str | None:
    match = _IMAGE.match(value) if isinstance(value, str) else None
    if match and (match["tag"] or match["digest"]):
        return None
    return "an image reference with a tag or a digest (registry.example.com/acme/api:1.4.2, or name@sha256:<64 hex>)"


def url_path(value: Any) -> str | None:
    if isinstance(value, str) and _URL_PATH.match(value):
        return None
    return "a URL path starting with / (/api/)"


def memory(value: Any) -> str | None:
    ok = isinstance(value, str) and re.fullmatch(r"[1-9][0-9]*(\.[0-9]+)?[bkmg]?", value.lower())
    return None if ok else "a size with a unit as docker reads it (512m, 2g)"


def absolute_path(value: Any) -> str | None:
    ok = isinstance(value, str) and value.startswith("/") and ".." not in value.split("/")
    return None if ok else "an absolute path (/srv/app/static)"


def nginx_time(value: Any) -> str | None:
    ok = isinstance(value, str) and re.fullmatch(r"([0-9]+(ms|s|m|h|d|w|M|y)?)+|max|off|epoch", value)
    return None if ok else "a time as nginx reads it (30d, 12h, max)"


def nginx_size(value: Any) -> str | None:
    ok = isinstance(value, str) and re.fullmatch(r"[0-9]+[kmg]?", value.lower())
    return None if ok else "a size as nginx reads it (512k, 50m, 1g; 0 for no limit)"


def zero_or_more(value: Any) -> str | None:
    return None if isinstance(value, int) and value >= 0 else "an integer of 0 or more"


def more_than_zero(value: Any) -> str | None:
    return None if isinstance(value, (int, float)) and value > 0 else "a number above 0"


def not_empty(value: Any) -> str | None:
    return None if not isinstance(value, str) or value.strip() else "a string that is not empty"


FORMS: dict[str, Callable[[Any], str | None]] = {
    "platform_domain": hostname,
    "platform_domain_aliases[]": hostname,
    "platform_apps[].route.host": hostname,
    "platform_apps[].routes[].host": hostname,
    "platform_apps[].static[].path": url_path,
    "platform_apps[].static[].folder": absolute_path,
    "platform_apps[].static[].expires": nginx_time,
    "platform_network_subnet": network,
    "platform_network_gateway": address,
    "platform_apps[].name": app_name,
    "platform_apps[].image": image,
    "platform_apps[].port": port,
    "platform_apps[].host_port": port,
    "platform_apps[].replicas": positive,
    "platform_apps[].resources.memory": memory,
    "platform_apps[].resources.cpus": more_than_zero,
    "platform_apps[].resources.gpus": positive,
    "platform_apps[].healthcheck.path": url_path,
    "platform_apps[].healthcheck.readiness": url_path,
    "platform_apps[].healthcheck.liveness": url_path,
    "platform_apps[].healthcheck.interval": positive,
    "platform_apps[].healthcheck.failures": positive,
    "platform_apps[].healthcheck.start_period": not_negative,
    "platform_apps[].route.path": url_path,
    "platform_apps[].routes[].path": url_path,
    "platform_apps[].route.body_size": nginx_size,
    "platform_apps[].routes[].body_size": nginx_size,
    "platform_apps[].route.timeout": positive,
    "platform_apps[].routes[].timeout": positive,
    "platform_apps[].route.cache": zero_or_more,
    "platform_apps[].routes[].cache": zero_or_more,
    "firewall_ssh_port": port_or_zero,
    "firewall_allowed_ports[].from": address_or_network,
}


def form_of(path: str, spec: dict) -> Callable[[Any], str | None] | None:
    """The form an option must have: FORMS's, else a port for an integer named *_port,
    else a non-empty text for a required string."""
    if path in FORMS:
        return FORMS[path]
    if spec.get("type") == "int" and path.endswith("_port"):
        return port
    if spec.get("required") and spec.get("type", "str") == "str":
        return not_empty
    return None

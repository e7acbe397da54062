"""User files in and out, defensively: bounded reads of UTF-8 text, strict JSON and
YAML (no duplicate keys, NaN, Infinity, giant numbers, YAML aliases or deep nesting),
and atomic writes (a temporary file in the same folder, then a rename), so a failed
write leaves any existing file intact. Every refusal is one :class:`PerfmodelError`.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from perfmodel.errors import PerfmodelError

#: the largest file read (a config.json is a few KB; a measurement CSV a few MB)
MAX_BYTES = 64 * 2**20
#: digits an integer in a file may have (2**64 has 20)
MAX_DIGITS = 30
#: nesting a JSON or YAML document may have
MAX_DEPTH = 64

_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16", b"\xfe\xff": "UTF-16"}


def shown(path) -> str:
    """``path`` quoted for a message, shortened if very long."""
    text = str(path)
    return repr(text if len(text) <= 80 else text[:60] + "…" + text[-15:])


def read_text(path, what: str, limit: int = MAX_BYTES) -> str:
    """The UTF-8 text of the regular file ``path`` (at most ``limit`` bytes); FIFOs,
    devices, other encodings and oversized files are refused, never read."""
    where = f"{what} {shown(path)}"
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise PerfmodelError(f"{where}: not a regular file")
        if info.st_size > limit:
            raise PerfmodelError(f"{where}: {info.st_size:,} bytes is more than the {limit:,}-byte limit")
        with open(path, "rb") as f:
            raw = f.read(limit + 1)
    except OSError as exc:
        raise PerfmodelError(f"cannot read {where}: {exc.strerror or exc}") from None
    if len(raw) > limit:
        raise PerfmodelError(f"{where}: more than the {limit:,}-byte limit")
    for bom, encoding in _BOMS.items():
        if raw.startswith(bom):
            raise PerfmodelError(f"{where}: {encoding} text; save it as UTF-8")
    try:
        return raw.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PerfmodelError(f"{where}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None


def _int(origin: str):
    def parse(text: str) -> int:
        digits = len(text.lstrip("-"))
        if digits > MAX_DIGITS:
            raise PerfmodelError(f"{origin}: an integer of {digits:,} digits is out of range")
        return int(text)

    return parse


def _float(origin: str):
    def parse(text: str) -> float:
        value = float(text)
        if value in (float("inf"), float("-inf")) or (value == 0 and any(c in "123456789" for c in text.split("e")[0].split("E")[0])):
            raise PerfmodelError(f"{origin}: the number {text[:30]} is out of range")
        return value

    return parse


def _constant(origin: str):
    def parse(name: str):
        raise PerfmodelError(f"{origin}: {name} is not a number (JSON numbers must be finite)")

    return parse


def _unique(origin: str):
    def pairs(items: list[tuple[str, object]]) -> dict:
        out = {}
        for key, value in items:
            if key in out:
                raise PerfmodelError(f"{origin}: duplicate key {key!r}")
            out[key] = value
        return out

    return pairs


def _depth(value, origin: str, level: int = 0) -> None:
    if level > MAX_DEPTH:
        raise PerfmodelError(f"{origin}: nested more than {MAX_DEPTH} levels deep")
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for child in children:
        if isinstance(child, (dict, list)):
            _depth(child, origin, level + 1)


def strict_hooks(origin: str) -> dict:
    """``json.loads`` keyword arguments that refuse duplicate keys, NaN/Infinity and
    out-of-range numbers, each error naming ``origin``."""
    return dict(object_pairs_hook=_unique(origin), parse_constant=_constant(origin), parse_int=_int(origin),
                parse_float=_float(origin))


def parse_json(text: str, origin: str) -> object:
    """``text`` as JSON, strictly: duplicate keys, NaN/Infinity, out-of-range numbers and
    nesting beyond :data:`MAX_DEPTH` are one-line errors naming ``origin``."""
    try:
        data = json.loads(text, **strict_hooks(origin))
    except json.JSONDecodeError as exc:
        raise PerfmodelError(f"{origin}:{exc.lineno}: malformed JSON: {exc.msg} (column {exc.colno})") from None
    except RecursionError:
        raise PerfmodelError(f"{origin}: nested more than {MAX_DEPTH} levels deep") from None
    _depth(data, origin)
    return data


def parse_yaml(text: str, origin: str) -> object:
    """``text`` as YAML with the safe loader, refusing aliases (no "billion laughs"),
    duplicate keys and nesting beyond :data:`MAX_DEPTH`."""
    import yaml

    class Loader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise PerfmodelError(f"{origin}:{event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are not allowed")
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise PerfmodelError(f"{origin}: nested more than {MAX_DEPTH} levels deep")
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def construct_mapping(self, node, deep=False):
            keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
            for i, key in enumerate(keys):
                if key in keys[:i]:
                    raise PerfmodelError(f"{origin}:{node.value[i][0].start_mark.line + 1}: duplicate key {key!r}")
            return super().construct_mapping(node, deep=deep)

    loader = Loader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else "?"
        problem = getattr(exc, "problem", None) or str(exc)
        raise PerfmodelError(f"{origin}:{line}: malformed YAML: {' '.join(str(problem).split())}") from None
    except RecursionError:
        raise PerfmodelError(f"{origin}: nested more than {MAX_DEPTH} levels deep") from None
    except (ValueError, OverflowError) as exc:
        raise PerfmodelError(f"{origin}: a value is out of range: {str(exc).splitlines()[0][:100]}") from None
    finally:
        loader.dispose()


def check_writable(path, what: str = "") -> Path:
    """``path`` if its folder exists and it is not a folder itself; else one-line error."""
    path = Path(path)
    label = f"{what} {shown(path)}".strip()
    if path.is_dir():
        raise PerfmodelError(f"cannot write {label}: it is a folder")
    folder = path.parent
    if not folder.is_dir():
        raise PerfmodelError(f"cannot write {label}: folder {shown(folder)} does not exist")
    return path


def atomic_write(path, write: Callable[[Path], None]) -> None:
    """Call ``write(temporary_path)`` for a file in ``path``'s folder, then rename it over
    ``path``: a write that fails part-way leaves any existing ``path`` untouched."""
    path = check_writable(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
        os.close(fd)
    except OSError as exc:
        raise PerfmodelError(f"cannot write {shown(path)}: {exc.strerror or exc}") from None
    tmp = Path(tmp)
    try:
        write(tmp)
        mode = stat.S_IMODE(os.stat(path).st_mode) if path.exists() else 0o666 & ~_umask()
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise PerfmodelError(f"cannot write {shown(path)}: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path, text: str) -> None:
    """``text`` (UTF-8) to ``path``, atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

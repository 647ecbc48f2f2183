"""Hypothesis strategies for *valid* ``.sevm`` manifests with random layout.

A manifest set is drawn in two steps:

1. content (``contents()``): what each vm means, spread over an ``extends`` chain of
   templates that live in the root file or in imported files in sub-directories, with
   overridden decoy values in the templates.  The content respects every semantic rule
   of the front end, so it compiles without errors (warnings are fine).
2. layout (``layouts(content)``): how it is spelled — indentation, spaces and tabs,
   blank lines, own-line and trailing comments, number spellings (decimal, hex,
   ``_``, leading zeros), size units, string escapes, LF/CRLF/mixed line ends, a BOM,
   no final newline, first statement on the ``{`` line, one-line empty blocks.

Two layouts of one content must compile to equal models; the formatter must not change
the model.  The fuzz tests mutate these files.
"""
from __future__ import annotations

import os
import random
import unicodedata
from dataclasses import dataclass, field

from hypothesis import strategies as st

from sevmanifest.cpus import CPU_MODELS

# ---- the abstract syntax the strategies build --------------------------------------------


@dataclass(frozen=True)
class Atom:
    kind: str  # "kw" | "punct" | "num" | "size" | "str" | "word" | "ver"
    value: object


def kw(text: str) -> Atom:
    return Atom("kw", text)


COMMA = Atom("punct", ",")
Stmt = tuple  # a statement: a tuple of atoms, rendered on one line


@dataclass
class Block:
    key: str
    stmts: list = field(default_factory=list)


@dataclass
class Decl:
    kind: str  # "vm" | "template"
    name: bytes
    extends: bytes | None
    items: list = field(default_factory=list)  # Stmt | Block


@dataclass
class Import:
    path: str


@dataclass
class Content:
    root: str  # relative path of the root manifest
    files: dict  # relative path -> list of Import | Decl
    # what the generator knows each vm must compile to: vm name -> {field: value}
    expected: dict = field(default_factory=dict)


@dataclass
class ManifestSet:
    content: Content
    files: dict  # relative path -> bytes

    def write(self, directory: str) -> str:
        """Write every file under ``directory``; return the root manifest's path."""
        for rel, data in self.files.items():
            path = os.path.join(directory, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as handle:
                handle.write(data)
        return os.path.join(directory, self.content.root)


# ---- values -------------------------------------------------------------------------------
# Content is drawn through ``_Choices``: every choice is one draw from a *cached*
# strategy (integers, booleans, binary, text with fixed arguments), which keeps the
# generation fast (Hypothesis re-validates every freshly built strategy) and shrinkable.
QEMU_VERSIONS = ((6, 2), (7, 2), (8, 0), (8, 1), (8, 2), (9, 0), (9, 1), (9, 2), (10, 1))
PATH_ALPHABET = "abcxyz019._-/éü✓ "
_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=8)
TEXT_POOL = "abcXYZ019 -_./\\\"'#{}\0\t\n\r\x7féü✓中\u202e\u0301\u200d\u2028\x85\ufeff\U0001f600"
_BYTES = st.binary(max_size=16)


class _Choices:
    """Every random choice of the content generator, from Hypothesis draws (shrinkable) or
    from a seeded ``random.Random`` (fast: the fuzz tests need many thousand manifests)."""

    def __init__(self, draw=None, rnd: random.Random | None = None):
        self.draw, self.rnd = draw, rnd

    def int(self, lo: int, hi: int) -> int:
        return self.rnd.randint(lo, hi) if self.rnd else self.draw(st.integers(lo, hi))

    def bool(self) -> bool:
        return self.int(0, 1) == 1

    def chance(self, one_in: int) -> bool:
        return self.int(0, one_in - 1) == 0

    def pick(self, seq):
        return seq[self.int(0, len(seq) - 1)]

    def distinct(self, make, lo: int, hi: int) -> list:
        out: list = []
        for _ in range(self.int(lo, hi)):
            value = make()
            if value not in out:
                out.append(value)
        while len(out) < lo:  # (only when make() repeated itself)
            value = make()
            if value not in out:
                out.append(value)
        return out

    def shuffled(self, items: list) -> list:
        items = list(items)
        for i in range(len(items) - 1, 0, -1):
            j = self.int(0, i)
            items[i], items[j] = items[j], items[i]
        return items

    def raw_bytes(self) -> bytes:
        if self.rnd:
            return bytes(self.rnd.randrange(256) for _ in range(self.rnd.randint(0, 16)))
        return self.draw(_BYTES)

    def text(self) -> str:
        if self.rnd:
            return "".join(self.rnd.choice(TEXT_POOL) for _ in range(self.rnd.randint(1, 8)))
        return self.draw(_TEXT)

    def path(self) -> bytes:
        if self.chance(4):  # any bytes but NUL and control characters (refused in paths)
            return _printable_path(self.raw_bytes()) or b"p"
        text = "".join(self.pick(PATH_ALPHABET) for _ in range(self.int(1, 12)))
        return text.encode() if text.strip("/") else b"x" + text.encode()

    def text_bytes(self) -> bytes:
        return self.text().encode() if self.bool() else self.raw_bytes()


def _printable_path(raw: bytes) -> bytes:
    """``raw`` without what the language refuses in a path: control, format and line
    separator characters (bytes that are not UTF-8 stay)."""
    text = raw.decode("utf-8", "surrogateescape")
    kept = "".join(ch for ch in text if 0xDC80 <= ord(ch) <= 0xDCFF
                   or unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp"))
    return kept.encode("utf-8", "surrogateescape")


def printable_name(text: str) -> bytes:
    """``text`` without what the language refuses in a name (anything not printable but
    the space)."""
    return "".join(ch for ch in text if ch.isprintable() or ch == " ").encode() or b"n"


def _listed(keyword: str, atoms: list) -> Stmt:
    out = [kw(keyword)]
    for i, atom in enumerate(atoms):
        out += ([COMMA] if i else []) + (list(atom) if isinstance(atom, tuple) else [atom])
    return Stmt(out)


def _artefact(c: _Choices, role: str) -> Stmt:
    stmt = (kw(role), Atom("str", c.path()))
    if c.bool():
        digest = "".join(c.pick("0123456789abcdef") for _ in range(64))
        stmt += (kw("sha256"), Atom("str", (digest.upper() if c.bool() else digest).encode()))
    return Stmt(stmt)


def _cpu_atoms(c: _Choices, version: tuple[int, int], minimum: int) -> list:
    names = sorted(n for n, info in CPU_MODELS.items() if info.since <= version)

    def one():
        form = c.int(0 if names else 1, 2)  # QEMU 6.2 predates every model in the table
        if form == 0:
            return ("name", c.pick(names))
        if form == 1:
            return ("fms", (c.int(0, 270), c.int(0, 255), c.int(0, 15)))
        return ("signature", c.int(0, 0x0FFF_FFFF))

    atoms = []
    for form, value in c.distinct(one, minimum, 3):
        if form == "name":
            atoms.append(Atom("str", value.encode()))
        elif form == "fms":
            atoms.append((kw("family"), Atom("num", value[0]), kw("model"), Atom("num", value[1]),
                          kw("stepping"), Atom("num", value[2])))
        else:
            atoms.append((kw("signature"), Atom("num", value)))
    return atoms


def _host(c: _Choices):
    """(host fields, the QEMU version in force, whether the vmm list contains qemu)."""
    fields = {}
    version = (9, 2)
    legacy = c.distinct(c.bool, 1, 2)
    if c.bool():
        version = c.pick([v for v in QEMU_VERSIONS if v >= (9, 1) or False not in legacy])
        text = f"{version[0]}.{version[1]}" + c.pick(("", ".0", ".1"))
        fields["qemu-version"] = Stmt((kw("qemu-version"), Atom("str", text.encode())))
    vmms = ["qemu"]
    if c.bool():
        vmms = c.distinct(lambda: c.pick(("qemu", "ec2", "gce")), 1, 3)
        fields["vmm"] = _listed("vmm", [Atom("word", v) for v in vmms])
    if c.bool() or legacy != [True]:
        fields["legacy-vm-type"] = _listed(
            "legacy-vm-type", [Atom("word", "on" if x else "off") for x in legacy])
    if c.bool():  # features other than 0 only with legacy init (KVM_SEV_INIT2 takes none)
        features = [0] if False in legacy else c.distinct(
            lambda: c.pick((0, 0x1, 0x20)) if c.bool() else c.int(0, 2**64 - 1), 1, 2)
        fields["sev-features"] = _listed("sev-features", [Atom("num", f) for f in features])
    if c.bool():
        fields["cbitpos"] = Stmt((kw("cbitpos"), Atom("num", c.int(32, 63))))
    if c.bool():
        fields["reduced-phys-bits"] = Stmt((kw("reduced-phys-bits"), Atom("num", c.int(1, 63))))
    return fields, version, "qemu" in vmms


def _policy(c: _Choices, guest: str):
    """(raw policy statement or None, policy block fields)."""
    raw = None
    if c.chance(4):  # reserved bits 6-15 clear, ES bit from the type
        value = c.int(0, 2**32 - 1) & ~0xFFC4 | (0x4 if guest == "sev-es" else 0)
        raw = Stmt((kw("policy"), Atom("num", value)))
    fields = {}
    for name in ("debug", "key-sharing", "send", "send-outside-domain", "send-to-non-sev"):
        if c.bool():
            fields[name] = Stmt((Atom("word", name), Atom("word", c.pick(("allow", "deny")))))
    if c.bool():
        fields["min-api"] = Stmt((kw("min-api"), Atom("ver", (c.int(0, 255), c.int(0, 255)))))
    return raw, fields


def _launch(c: _Choices):
    fields = {}
    if c.bool():
        fmt = c.pick((None, "qcow2", "raw"))
        fields["disk"] = Stmt((kw("disk"), Atom("str", c.path()))
                              + ((kw("format"), Atom("word", fmt)) if fmt else ()))
    if c.bool():
        fields["net"] = Stmt((kw("net"), Atom("word", c.pick(("user", "none")))))
    if c.bool():
        fields["console"] = Stmt((kw("console"), Atom("word", c.pick(("serial", "none")))))
    if c.bool():
        extra = [c.text_bytes() if c.bool() else c.pick((b"-nographic", b"-s"))
                 for _ in range(c.int(1, 3))]
        fields["extra"] = _listed("extra", [Atom("str", e) for e in extra])
    return fields


def vm_settings(c: _Choices):
    """The effective settings of one valid vm: (top-level, blocks, raw policy)."""
    guest = c.pick(("sev", "sev-es"))
    top = {"firmware": _artefact(c, "firmware")}
    if guest == "sev-es" or c.bool():
        top["type"] = Stmt((kw("type"), Atom("word", guest)))
    if c.bool():
        top["kernel"] = _artefact(c, "kernel")
        if c.bool():
            top["initrd"] = _artefact(c, "initrd")
        if c.bool():
            cmdline = c.text_bytes().replace(b"\0", b"")  # QEMU passes it as a C string
            top["cmdline"] = Stmt((kw("cmdline"), Atom("str", cmdline)))
        hashes = c.pick((None, "on", "off"))
        if hashes:
            top["kernel-hashes"] = Stmt((kw("kernel-hashes"), Atom("word", hashes)))
    elif c.chance(4):
        top["kernel-hashes"] = Stmt((kw("kernel-hashes"), Atom("word", "off")))
    host, version, qemu_vmm = _host(c)
    if (guest == "sev-es" and qemu_vmm) or c.bool():  # SEV-ES on QEMU measures the CPU
        top["cpu"] = _listed("cpu", _cpu_atoms(c, version, 1))
    if c.bool():
        top["vcpus"] = _listed("vcpus", [Atom("num", n) for n in
                                         c.distinct(lambda: c.int(1, 512), 1, 4)])
    if c.bool():
        top["memory"] = Stmt((kw("memory"), Atom("size", c.int(1, 1 << 21) << 20)))
    if c.bool():
        machine = c.pick((b"q35", b"pc-q35-7.1", b"pc-q35-9.2", b"pc"))
        top["machine"] = Stmt((kw("machine"), Atom("str", machine)))
    raw, policy = _policy(c, guest)
    return top, {"host": host, "policy": policy, "launch": _launch(c)}, raw


# ---- spreading a vm over a chain of templates -------------------------------------------
def _decoy(c: _Choices, stmt: Stmt) -> Stmt:
    """The same statement with other values (it is overridden, so never lowered)."""
    swaps = {"num": lambda: c.int(0, 600), "size": lambda: c.int(1, 64) << 20,
             "str": lambda: c.path()}
    return Stmt(Atom(a.kind, swaps[a.kind]()) if a.kind in swaps and c.bool() else a
                for a in stmt)


def expected_values(top: dict, blocks: dict, raw: Stmt | None, applied: list) -> dict:
    """What the model of the vm must say, computed independently of the compiler."""
    guest = top["type"][1].value if "type" in top else "sev"
    policy = raw[1].value if raw is not None else 0x1 | (0x4 if guest == "sev-es" else 0)
    bits = {"debug": 0x1, "key-sharing": 0x2, "send": 0x8, "send-outside-domain": 0x10,
            "send-to-non-sev": 0x20}
    for stmt in applied:  # the policy block fields that survive a raw policy
        if stmt[0].kind == "word":
            bit = bits[stmt[0].value]
            policy = policy | bit if stmt[1].value == "deny" else policy & ~bit
    applied_api = [s for s in applied if s[0].kind != "word"]
    if applied_api:  # min-api is applied after the fields, whatever the statement order
        major, minor = applied_api[0][1].value
        policy = (policy & 0xFFFF) | major << 16 | minor << 24
    vcpus = tuple(a.value for a in top["vcpus"][1:] if a.kind == "num") if "vcpus" in top else (1,)
    memory = top["memory"][1].value if "memory" in top else 2 << 30
    return {"type": guest, "policy": policy, "vcpus": vcpus, "memory": memory}


def vm_chain(c: _Choices, vm_name: bytes, template_names: list[bytes],
             expected: dict | None = None) -> list[Decl]:
    """The vm and its templates (outermost last), its settings spread over the levels:
    each setting at one level, with decoy values at levels further out.  ``expected``
    receives what the vm must compile to."""
    top, blocks, raw = vm_settings(c)
    applied: list = []
    levels = len(template_names) + 1  # level 0 is the vm
    decls = [Decl("vm", vm_name, template_names[0] if template_names else None)]
    for i, name in enumerate(template_names):
        parent = template_names[i + 1] if i + 1 < len(template_names) else None
        decls.append(Decl("template", name, parent))
    for stmt in top.values():
        final = c.int(0, levels - 1)
        decls[final].items.append(stmt)
        for above in range(final + 1, levels):
            if c.chance(4):
                decls[above].items.append(_decoy(c, stmt))
    raw_level = c.int(0, levels - 1) if raw is not None else None
    if raw is not None:  # replaces the policy fields of the levels further out
        decls[raw_level].items.append(raw)
    for key, fields in blocks.items():
        own = (lambda lv: True) if key != "policy" or raw_level is None else (
            lambda lv: lv != raw_level)  # a raw policy and a policy block in one decl clash
        per_level: dict[int, list] = {}
        for stmt in fields.values():
            allowed = [lv for lv in range(levels) if own(lv) and
                       (key != "policy" or raw_level is None or lv < raw_level)]
            if not allowed:
                continue  # a raw policy on the vm itself: no block field refines it
            final = c.pick(allowed)
            per_level.setdefault(final, []).append(stmt)
            if key == "policy":
                applied.append(stmt)
            for above in range(final + 1, levels):
                if own(above) and c.chance(5):
                    per_level.setdefault(above, []).append(_decoy(c, stmt))
        for lv in range(levels):
            if lv in per_level or (own(lv) and c.chance(10)):
                decls[lv].items.append(Block(key, c.shuffled(per_level.get(lv, []))))
    for decl in decls:
        decl.items = c.shuffled(decl.items)
    if expected is not None:
        expected[vm_name.decode("utf-8", "surrogateescape")] = expected_values(top, blocks, raw, applied)
    return decls


LIB_FILES = ("lib/common.sevm", "lib/sub/deep.sevm", "other.sevm", "lib/sub/more/x.sevm")
NAMES = (b"web", b"hardened", b"a b", b'q"uote', b"\\", "中文".encode())


@st.composite
def contents(draw, max_vms: int = 2, max_depth: int = 3, imports: bool = True) -> Content:
    """Valid content, every choice a Hypothesis draw (shrinks well; ~50 ms a manifest)."""
    return make_content(_Choices(draw), max_vms, max_depth, imports)


def random_content(rnd: random.Random, max_vms: int = 2, max_depth: int = 3,
                   imports: bool = True) -> Content:
    """Valid content from a seeded random generator (fast; for the fuzz tests)."""
    return make_content(_Choices(rnd=rnd), max_vms, max_depth, imports)


def make_content(c: _Choices, max_vms: int, max_depth: int, imports: bool) -> Content:
    root = c.pick(("main.sevm", "images/web.sevm"))
    files: dict[str, list] = {root: []}
    used: set[bytes] = set()
    expected: dict = {}

    def fresh_name() -> bytes:
        name = c.pick(NAMES) if c.bool() else printable_name(c.text())
        while name in used:
            name += b"'"
        used.add(name)
        return name

    n_vms = 0 if c.chance(10) else c.int(1, max_vms)
    for _ in range(n_vms):
        templates = [fresh_name() for _ in range(c.int(0, max_depth))]
        decls = vm_chain(c, fresh_name(), templates, expected)
        files[root].append(decls[0])
        for template in decls[1:]:
            where = c.pick((root,) + LIB_FILES) if imports else root
            files.setdefault(where, []).append(template)
    if n_vms == 0:  # a file of templates only
        template = vm_chain(c, fresh_name(), [])[0]
        template.kind = "template"
        files[root].append(template)
    _add_imports(c, root, files)
    for rel in files:
        shuffled = c.shuffled(files[rel])
        imports_first = [i for i in shuffled if isinstance(i, Import)]
        decls = [d for d in shuffled if not isinstance(d, Import)]
        files[rel] = shuffled if c.chance(3) else imports_first + decls  # imports may come late
    return Content(root, files, expected)


def _add_imports(c: _Choices, root: str, files: dict) -> None:
    """A random import DAG that reaches every file from the root; diamonds allowed."""
    reached = [root]
    for rel in c.shuffled([f for f in files if f != root]):
        importers = c.distinct(lambda: c.pick(reached), 1, 2)
        for importer in importers:
            target = os.path.relpath(rel, os.path.dirname(importer) or ".")
            files[importer].append(Import(c.pick((target, "./" + target))))
        reached.append(rel)


# ---- layout -------------------------------------------------------------------------------
# Layout choices are many and small (one per character of a string), so they come from a
# random.Random seeded by one Hypothesis draw per file: fast, and reproducible from the
# seed Hypothesis reports.  Content stays in Hypothesis' hands (and shrinks).
COMMENT_POOL = "abc XYZ 019 #\"'\\{}(),;:-_ é ü ✓ 中 \u202e\u0301\u200d\u2028\x0c\x85\ufeff\U0001f600\t"


def _space(rnd: random.Random) -> str:
    return "".join(rnd.choice(" \t") for _ in range(rnd.choice((1, 1, 1, 2, 3))))


def _comment(rnd: random.Random) -> str:
    return "#" + "".join(rnd.choice(COMMENT_POOL) for _ in range(rnd.randint(0, 12)))


def spell_number(rnd: random.Random, value: int) -> str:
    style = rnd.choice(("dec", "dec", "hex", "HEX"))
    digits = str(value) if style == "dec" else format(value, "x" if style == "hex" else "X")
    digits = "0" * rnd.choice((0, 0, 0, 1, 2)) + digits
    if rnd.random() < 0.3:  # underscores between digits
        digits = digits[0] + "".join(("_" if rnd.random() < 0.3 else "") + c for c in digits[1:])
    return digits if style == "dec" else "0x" + digits


def spell_size(rnd: random.Random, nbytes: int) -> str:
    units = [(u, m) for u, m in (("T", 40), ("G", 30), ("M", 20), ("K", 10))
             if nbytes % (1 << m) == 0]
    unit, shift = rnd.choice(units)
    unit += rnd.choice(("", "iB"))
    return spell_number(rnd, nbytes >> shift) + rnd.choice(("", "", " ", "\t")) + unit


def _chars(data: bytes) -> list:
    """Split bytes into UTF-8 characters (str) and stray bytes (int)."""
    out, i = [], 0
    while i < len(data):
        for width in (1, 2, 3, 4):
            try:
                out.append(data[i:i + width].decode("utf-8"))
                i += width
                break
            except UnicodeDecodeError:
                continue
        else:
            out.append(data[i])
            i += 1
    return out


_SPECIAL = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t"}


def spell_string(rnd: random.Random, data: bytes) -> str:
    """A string literal for ``data``: each character raw or in one of its escapes."""
    escape_rate = rnd.choice((0.0, 0.1, 0.5, 1.0))
    out = []
    for ch in _chars(data):
        if isinstance(ch, int):  # not UTF-8: only \xNN can say it
            out.append(f"\\x{ch:02x}" if rnd.random() < 0.5 else f"\\x{ch:02X}")
            continue
        if ch not in '\\"\n\r' and rnd.random() >= escape_rate:
            out.append(ch)
            continue
        hex_digits = format(ord(ch), rnd.choice("xX"))
        options = ["\\u{" + "0" * rnd.randint(0, 6 - len(hex_digits)) + hex_digits + "}",
                   "".join(f"\\x{b:02x}" for b in ch.encode())]
        if ch in _SPECIAL:
            options.append(_SPECIAL[ch])
        out.append(rnd.choice(options))
    return '"' + "".join(out) + '"'


def spell_atom(rnd: random.Random, atom: Atom) -> str:
    if atom.kind == "num":
        return spell_number(rnd, atom.value)
    if atom.kind == "size":
        return spell_size(rnd, atom.value)
    if atom.kind == "str":
        return spell_string(rnd, atom.value)
    if atom.kind == "ver":
        major, minor = atom.value
        return "0" * rnd.randint(0, 1) + f"{major}." + "0" * rnd.randint(0, 1) + str(minor)
    return str(atom.value)  # kw, punct, word


def spell_stmt(rnd: random.Random, stmt: Stmt) -> str:
    text = ""
    for i, atom in enumerate(stmt):
        if i:
            glued = atom.kind == "punct" or stmt[i - 1].kind == "punct"
            text += rnd.choice(("", " ", "  ")) if glued else _space(rnd)
        text += spell_atom(rnd, atom)
    return text


class _Lines:
    """Collects lines, decorated with indentation, comments, blank lines, trailing spaces."""

    def __init__(self, rnd: random.Random):
        self.rnd = rnd
        self.lines: list[str] = []

    def add(self, depth: int, text: str) -> None:
        rnd = self.rnd
        for _ in range(rnd.choice((0, 0, 0, 0, 1, 2))):
            self.lines.append(rnd.choice(("", " ", "\t")))
        if rnd.random() < 0.12:
            self.lines.append(self._indent(depth) + _comment(rnd))
        line = self._indent(depth) + text
        if rnd.random() < 0.12:
            line += rnd.choice(("", " ", "  \t")) + _comment(rnd)
        elif rnd.random() < 0.1:
            line += _space(rnd)  # trailing whitespace
        self.lines.append(line)

    def _indent(self, depth: int) -> str:
        return self.rnd.choice(("    ", "    ", "  ", "\t", "")) * depth


def _render_body(rnd: random.Random, lines: _Lines, head: str, items: list, depth: int) -> None:
    if not items and rnd.random() < 0.5:
        lines.add(depth, head + rnd.choice((" {}", "{}", " { }")))
        return
    rest = items
    if items and isinstance(items[0], tuple) and rnd.random() < 0.15:
        lines.add(depth, head + " { " + spell_stmt(rnd, items[0]))  # statement on the { line
        rest = items[1:]
    else:
        lines.add(depth, head + rnd.choice((" {", " {", "{", "\t{")))
    for item in rest:
        if isinstance(item, Block):
            _render_body(rnd, lines, item.key, item.stmts, depth + 1)
        else:
            lines.add(depth + 1, spell_stmt(rnd, item))
    lines.add(depth, "}")


def render(rnd: random.Random, items: list) -> bytes:
    """One file's bytes in a random layout."""
    lines = _Lines(rnd)
    for item in items:
        if isinstance(item, Import):
            lines.add(0, "import" + _space(rnd) + spell_string(rnd, item.path.encode()))
            continue
        head = item.kind + _space(rnd) + spell_string(rnd, item.name)
        if item.extends is not None:
            head += _space(rnd) + "extends" + _space(rnd) + spell_string(rnd, item.extends)
        _render_body(rnd, lines, head, item.items, 0)
    if rnd.random() < 0.15:
        lines.lines.append(_comment(rnd))
    ending = rnd.choice(("\n", "\n", "\r\n", "mixed"))
    out = "".join(line + (rnd.choice(("\n", "\r\n")) if ending == "mixed" else ending)
                  for line in lines.lines)
    if rnd.random() < 0.2:
        out = out.rstrip("\r\n")  # no final newline
    data = out.encode("utf-8")
    return (b"\xef\xbb\xbf" + data) if rnd.random() < 0.1 else data


SEEDS = st.integers(0, 2**32 - 1)


@st.composite
def layouts(draw, content: Content) -> ManifestSet:
    files = {rel: render(random.Random(draw(SEEDS)), items) for rel, items in content.files.items()}
    return ManifestSet(content, files)


def manifest_sets(max_vms: int = 2, max_depth: int = 3) -> st.SearchStrategy[ManifestSet]:
    """Valid manifest sets (root + imported files) with a random layout."""
    return contents(max_vms, max_depth).flatmap(layouts)


def random_file(rnd: random.Random) -> bytes:
    """One valid manifest without imports, content and layout from ``rnd`` (fuzz seeds)."""
    content = random_content(rnd, max_vms=2, max_depth=2, imports=False)
    return render(rnd, content.files[content.root])


def random_set(rnd: random.Random) -> ManifestSet:
    """A valid manifest set with imports, content and layout from ``rnd``."""
    content = random_content(rnd)
    return ManifestSet(content, {rel: render(rnd, items) for rel, items in content.files.items()})

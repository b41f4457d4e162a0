r"""The WordNet 3.0 noun and verb hierarchies from their own database files (``data.noun``, ``index.noun``,
``data.verb``, ``index.verb``).

Getting the data: Debian/Ubuntu ship WordNet 3.0 as the package ``wordnet-base``
(``apt-get install wordnet-base``), which installs the database in ``/usr/share/wordnet``. Any other copy of the
WordNet 3.0 ``dict/`` folder (e.g. from the Princeton tarball) works too: pass its folder as ``root``.
No network access and no NLTK are needed.

What is parsed (format of ``wndb(5)``): every line of ``data.noun`` (or ``data.verb``) that does not start with
a space (the license header does) is one synset::

    synset_offset lex_filenum ss_type w_cnt word lex_id [word lex_id ...] p_cnt [ptr ...] | gloss

``w_cnt`` is a two-digit **hexadecimal** word count, ``lex_id`` one hex digit, ``p_cnt`` a three-digit decimal
pointer count and each pointer is ``pointer_symbol synset_offset pos source/target`` (a verb line carries its
sentence frames after the pointers; they are ignored). Only hypernym pointers within the part of speech are
kept: ``@`` (hypernym) and ``@i`` (instance hypernym, nouns only). The gloss (after the first
`` | ``) may itself contain ``|``; it is kept verbatim. ``index.noun`` (``lemma pos synset_cnt p_cnt [ptr_symbol
...] sense_cnt tagsense_cnt synset_offset ...``) gives each lemma's senses in order, from which synsets get
NLTK-style names ``lemma.n.NN`` (the synset's first word, lowercased, and its sense number for that word; e.g.
``mammal.n.01`` is offset ``01861778``; verbs are named ``lemma.v.NN``).

Instance hypernyms. ``include_instances=True`` (the default) follows ``@i`` pointers as well as ``@``: an
instance (e.g. a person or a place) is then below the class it is an instance of and all of that class's
ancestors. This is what Nickel & Kiela's closure script does (``wordnet/transitive_closure.py`` of
facebookresearch/poincare-embeddings adds, for every ``synset.instance_hyponyms()``, the edges to its instance
hypernyms and to their ``closure(hypernyms)``); NLTK's ``closure(lambda s: s.hypernyms())`` alone would skip
them, since ``hypernyms()`` returns ``@`` pointers only. In WordNet 3.0 the choice adds 79,733 of the 743,241
pairs of the full noun closure, and 12 of the 1,182 synsets of the mammal subtree (eleven racehorses such as
``secretariat.n.02``, and ``lucy.n.01``), which are reached through ``@i`` only (``docs/wordnet.md``).

Closures. The hypernym graph is a DAG (some synsets have two hypernyms; the verb hierarchy has many roots). :func:`ancestors` gives, per synset,
every synset reachable by hypernym pointers; the transitive closure is the set of pairs ``(u, v)`` with ``v``
an ancestor of ``u`` (no self-pairs). :func:`subtree` restricts it to a root and everything below it (the
"mammal subtree": every synset with ``mammal.n.01`` among its ancestors, plus ``mammal.n.01``), keeping the
pairs whose both ends are in the subtree.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = [
    "DEFAULT_WORDNET_DIRS",
    "Synset",
    "WordNetHierarchy",
    "POS_CODES",
    "find_wordnet_dir",
    "parse_data",
    "parse_index",
    "synset_names",
    "load_wordnet",
    "ancestors",
    "closure",
    "subtree",
    "ClosureGraph",
]

#: Folders searched for ``data.noun`` when no ``root`` is given (Debian's ``wordnet-base`` installs the first).
DEFAULT_WORDNET_DIRS: tuple[str, ...] = ("/usr/share/wordnet", "/usr/local/share/wordnet", "/usr/share/wordnet/dict")

#: The parts of speech whose hypernym hierarchy is parsed, and their ``ss_type``/pointer codes in ``wndb(5)``.
POS_CODES: dict[str, str] = {"noun": "n", "verb": "v"}

_HOW_TO_GET = (
    "install WordNet 3.0 with `apt-get install wordnet-base` (Debian/Ubuntu; files in /usr/share/wordnet) or pass "
    "the folder of a WordNet 3.0 `dict/` copy holding data.noun, index.noun, data.verb and index.verb"
)


def _pos_code(pos: str) -> str:
    if pos not in POS_CODES:
        raise ValueError(f"pos must be one of {sorted(POS_CODES)}, got {pos!r}")
    return POS_CODES[pos]


@dataclasses.dataclass(frozen=True)
class Synset:
    """One synset of ``data.noun`` or ``data.verb``.

    Attributes:
        offset: byte offset of its line in the data file (the synset's id, ``synset_offset``).
        lex_filenum: lexicographer file number (``05`` = ``noun.animal``).
        words: its words in file order (underscores for spaces, as stored).
        hypernyms: offsets of its ``@`` (hypernym) targets of the same part of speech.
        instance_hypernyms: offsets of its ``@i`` (instance hypernym) targets of the same part of speech.
        gloss: the text after the first ``" | "`` (may itself contain ``|``), stripped.
    """

    offset: int
    lex_filenum: int
    words: tuple[str, ...]
    hypernyms: tuple[int, ...]
    instance_hypernyms: tuple[int, ...]
    gloss: str


@dataclasses.dataclass(frozen=True)
class WordNetHierarchy:
    """One parsed part of speech: ``synsets`` by offset, their NLTK-style ``names`` (``offset -> "dog.n.01"``)
    and ``pos`` (``"noun"`` or ``"verb"``)."""

    synsets: Mapping[int, Synset]
    names: Mapping[int, str]
    pos: str = "noun"

    def offset(self, name: str) -> int:
        """The offset of the synset called ``name`` (e.g. ``"mammal.n.01"``); ``KeyError`` if unknown."""
        for off, n in self.names.items():
            if n == name:
                return off
        raise KeyError(f"no {self.pos} synset named {name!r}")


def find_wordnet_dir(root: str | os.PathLike | None = None, pos: str = "noun") -> Path:
    """The folder holding ``data.<pos>``: ``root`` if given, else the first of :data:`DEFAULT_WORDNET_DIRS`.

    Raises:
        FileNotFoundError: no ``data.<pos>`` there; the message says how to get WordNet.
        ValueError: ``pos`` is not a key of :data:`POS_CODES`.
    """
    _pos_code(pos)
    candidates = [Path(root)] if root is not None else [Path(d) for d in DEFAULT_WORDNET_DIRS]
    for d in candidates:
        if (d / f"data.{pos}").is_file():
            return d
        if (d / "dict" / f"data.{pos}").is_file():
            return d / "dict"
    where = ", ".join(str(d) for d in candidates)
    raise FileNotFoundError(f"WordNet {pos} database (data.{pos}) not found in {where}: {_HOW_TO_GET}")


def _parse_data_line(line: str, lineno: int, path: Path, code: str) -> Synset:
    data, sep, gloss = line.partition(" | ")
    if not sep and data.endswith(" |"):  # empty gloss
        data = data[:-2]
    f = data.split()
    try:
        offset, lex_filenum, ss_type = int(f[0]), int(f[1]), f[2]
        w_cnt = int(f[3], 16)
        words = tuple(f[4 + 2 * i] for i in range(w_cnt))
        i = 4 + 2 * w_cnt
        p_cnt = int(f[i])
        hyper, inst = [], []
        for j in range(p_cnt):
            sym, target, pos = f[i + 1 + 4 * j : i + 4 + 4 * j]
            if pos == code and sym in ("@", "@i"):
                (hyper if sym == "@" else inst).append(int(target))
        if i + 4 * p_cnt >= len(f) or len(words) != w_cnt:
            raise IndexError
    except (ValueError, IndexError):
        raise ValueError(f"{path}:{lineno}: not a wndb(5) synset line: {line[:120]!r}") from None
    if ss_type != code:
        raise ValueError(f"{path}:{lineno}: ss_type {ss_type!r} is not {code!r}; is this the right data file?")
    return Synset(offset, lex_filenum, words, tuple(hyper), tuple(inst), gloss.strip())


def parse_data(path: str | os.PathLike, pos: str = "noun") -> dict[int, Synset]:
    """Parse ``data.noun`` or ``data.verb`` (module docstring) into ``{offset: Synset}``; header lines (leading
    space) skipped.

    Raises:
        ValueError: a line that is not in the ``wndb(5)`` synset format or of another part of speech (the message
            gives file and line).
    """
    code = _pos_code(pos)
    path = Path(path)
    out: dict[int, Synset] = {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip() or line.startswith(" "):
                continue
            s = _parse_data_line(line.rstrip("\n"), lineno, path, code)
            out[s.offset] = s
    return out


def parse_index(path: str | os.PathLike) -> dict[str, list[int]]:
    """Parse ``index.noun`` or ``index.verb`` into ``{lemma: [synset offsets in sense order]}`` (header lines
    skipped)."""
    path = Path(path)
    out: dict[str, list[int]] = {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip() or line.startswith(" "):
                continue
            f = line.split()
            try:
                synset_cnt, p_cnt = int(f[2]), int(f[3])
                offs = [int(x) for x in f[4 + p_cnt + 2 :]]
            except (ValueError, IndexError):
                raise ValueError(f"{path}:{lineno}: not a wndb(5) index line: {line[:120]!r}") from None
            if len(offs) != synset_cnt:
                raise ValueError(f"{path}:{lineno}: {synset_cnt} synsets announced, {len(offs)} listed")
            out[f[0]] = offs
    return out


def synset_names(synsets: Mapping[int, Synset], index: Mapping[str, list[int]], pos: str = "noun") -> dict[int, str]:
    """NLTK-style names ``lemma.n.NN`` (``lemma.v.NN`` for verbs): first word (lowercased, adjective markers like
    ``(a)`` dropped) and the 1-based position of the synset among that lemma's senses in the index file;
    ``n.<offset>`` (``v.<offset>``) when the lemma is missing from the index."""
    code = _pos_code(pos)
    names = {}
    for off, s in synsets.items():
        lemma = s.words[0].lower().split("(")[0]
        senses = index.get(lemma, [])
        names[off] = f"{lemma}.{code}.{senses.index(off) + 1:02d}" if off in senses else f"{code}.{off:08d}"
    return names


def load_wordnet(root: str | os.PathLike | None = None, pos: str = "noun") -> WordNetHierarchy:
    """Parse ``data.<pos>`` and ``index.<pos>`` of the WordNet folder (:func:`find_wordnet_dir`); ``pos`` is
    ``"noun"`` or ``"verb"``."""
    d = find_wordnet_dir(root, pos)
    synsets = parse_data(d / f"data.{pos}", pos)
    index = parse_index(d / f"index.{pos}") if (d / f"index.{pos}").is_file() else {}
    return WordNetHierarchy(synsets, synset_names(synsets, index, pos), pos)


def ancestors(synsets: Mapping[int, Synset], include_instances: bool = True) -> dict[int, frozenset[int]]:
    """Every synset's set of ancestors (transitive hypernyms, itself excluded), by iterative post-order DFS.

    Args:
        synsets: ``{offset: Synset}``.
        include_instances: follow ``@i`` (instance hypernym) pointers as well as ``@`` (module docstring).

    Raises:
        ValueError: a hypernym cycle or a pointer to an offset that is not in ``synsets``.
    """

    def parents(o: int) -> tuple[int, ...]:
        s = synsets[o]
        return s.hypernyms + s.instance_hypernyms if include_instances else s.hypernyms

    for s in synsets.values():
        for p in s.hypernyms + s.instance_hypernyms:
            if p not in synsets:
                raise ValueError(f"synset {s.offset:08d} points to hypernym {p:08d}, which is not in the data")
    anc: dict[int, frozenset[int]] = {}
    on_stack: set[int] = set()
    for start in synsets:
        if start in anc:
            continue
        stack = [(start, False)]
        while stack:
            o, done = stack.pop()
            if done:
                on_stack.discard(o)
                acc: set[int] = set()
                for p in parents(o):
                    acc.add(p)
                    acc |= anc[p]
                anc[o] = frozenset(acc)
                continue
            if o in anc:
                continue
            if o in on_stack:
                raise ValueError(f"hypernym cycle through synset {o:08d}")
            on_stack.add(o)
            stack.append((o, True))
            stack.extend((p, False) for p in parents(o) if p not in anc)
    return anc


@dataclasses.dataclass(frozen=True)
class ClosureGraph:
    """A transitive closure as index pairs.

    Attributes:
        nodes: synset offsets; node ``i`` is ``nodes[i]`` (sorted by offset).
        edges: ``(child, ancestor)`` index pairs, sorted.
        names: the nodes' names (``names[i]`` for node ``i``) when known, else their offsets as text.
    """

    nodes: tuple[int, ...]
    edges: tuple[tuple[int, int], ...]
    names: tuple[str, ...]

    @property
    def num_nodes(self) -> int:
        return len(self.nodes)

    @property
    def num_edges(self) -> int:
        return len(self.edges)


def _graph(nodes: Iterable[int], anc: Mapping[int, frozenset[int]], names: Mapping[int, str] | None) -> ClosureGraph:
    nodes = tuple(sorted(nodes))
    idx = {o: i for i, o in enumerate(nodes)}
    edges = sorted((idx[u], idx[v]) for u in nodes for v in anc[u] if v in idx)
    label = tuple(names.get(o, f"{o:08d}") if names else f"{o:08d}" for o in nodes)
    return ClosureGraph(nodes, tuple(edges), label)


def closure(
    synsets: Mapping[int, Synset],
    include_instances: bool = True,
    names: Mapping[int, str] | None = None,
) -> ClosureGraph:
    """The transitive closure of a whole hierarchy: pairs ``(u, v)`` with ``v`` an ancestor of ``u``
    (:func:`ancestors`), over the synsets that are in at least one pair.

    A synset with neither hypernym nor hyponym is left out: every noun descends from ``entity.n.01``, but 225 of
    WordNet 3.0's 13,767 verb synsets are isolated; without them the verb closure has 13,542 nodes and 35,079
    pairs, the counts of Nickel & Kiela 2018 (Table 1).
    """
    anc = ancestors(synsets, include_instances)
    linked = {u for u, a in anc.items() if a} | {v for a in anc.values() for v in a}
    return _graph(linked, anc, names)


def subtree(
    synsets: Mapping[int, Synset],
    root: int,
    include_instances: bool = True,
    names: Mapping[int, str] | None = None,
    exclude: Iterable[int] = (),
) -> ClosureGraph:
    """The closure restricted to ``root`` and every synset having ``root`` among its ancestors.

    For ``root = 01861778`` (``mammal.n.01``) this is the mammal subtree. Nickel & Kiela's script also drops
    the pairs matched by a hand-made filter; the part of it that takes effect in their Python script removes two
    synsets, ``tusker.n.01`` and ``female_mammal.n.01`` (``docs/wordnet.md``), which ``exclude`` reproduces.

    Args:
        synsets: ``{offset: Synset}``.
        root: offset of the subtree's root.
        include_instances: follow ``@i`` pointers too (module docstring).
        names: optional names for :attr:`ClosureGraph.names`.
        exclude: offsets of synsets left out (with every pair they are in).

    Raises:
        KeyError: ``root`` (or an ``exclude`` offset) is not a synset offset of ``synsets``.
    """
    exclude = set(exclude)
    for o in {root} | exclude:
        if o not in synsets:
            raise KeyError(f"synset {o:08d} is not in the data")
    anc = ancestors(synsets, include_instances)
    nodes = [root] + [o for o, a in anc.items() if root in a and o not in exclude]
    return _graph(nodes, anc, names)

"""WordNet noun database parser, closures and subtrees (``lorentzcv.data.wordnet``) on a hand-written fixture
in the real ``data.noun``/``index.noun`` format (``wndb(5)``), plus the installed WordNet 3.0 when present."""

from __future__ import annotations

from pathlib import Path

import pytest

from lorentzcv.data import wordnet as wn

HEADER = (
    "  1 This software and database is being provided to you, the LICENSEE, by  \n"
    "  2 Princeton University under the following license.  By obtaining, using  \n"
)
# offsets: entity 1740, animal 2000, mammal 3000, dog 4000, cat 5000, pet 6000, Lassie 7000, dog(2) 8000
DATA = (
    "00001740 03 n 01 entity 0 003 ~ 00002000 n 0000 ~ 00008000 n 0000 ~ 00006000 n 0000 "
    "| that which is perceived or known or inferred to have its own distinct existence  \n"
    "00002000 05 n 02 animal 0 animate_being 0 003 @ 00001740 n 0000 ~ 00003000 n 0000 ~ 00006000 n 0000 "
    '| a living organism | characterized by voluntary movement; "animals | plants"  \n'
    "00003000 05 n 01 mammal 0 004 @ 00002000 n 0000 ~ 00004000 n 0000 ~ 00005000 n 0000 + 02832273 a 0201 "
    "| any warm-blooded vertebrate  \n"
    # w_cnt 0a = ten words (hexadecimal), lex_id hex digits, a verb pointer and a meronym that must be ignored
    "00004000 05 n 0a dog 0 domestic_dog 0 Canis_familiaris 0 hound 1 pooch 0 doggy 0 bow-wow 0 mutt 0 "
    "cur 2 tyke a 005 @ 00003000 n 0000 @ 00006000 n 0000 %p 00005000 n 0000 + 01234567 v 0101 "
    "~i 00007000 n 0000 | a member of the genus Canis  \n"
    "00005000 05 n 01 cat 0 001 @ 00003000 n 0000 | feline mammal  \n"
    "00006000 05 n 01 pet 0 001 @ 00002000 n 0000 | a domesticated animal kept for companionship  \n"
    "00007000 18 n 01 Lassie 0 001 @i 00004000 n 0000 | a fictional collie  \n"
    "00008000 18 n 02 dog 1 frump 0 001 @ 00001740 n 0000 | a dull unattractive unpleasant girl or woman  \n"
)
INDEX = (
    "  1 This software and database is being provided to you, the LICENSEE, by  \n"
    "animal n 1 2 @ ~ 1 1 00002000  \n"
    "animate_being n 1 1 @ 1 0 00002000  \n"
    "cat n 1 1 @ 1 0 00005000  \n"
    "dog n 2 3 @ ~ %p 2 1 00004000 00008000  \n"
    "entity n 1 1 ~ 1 1 00001740  \n"
    "frump n 1 1 @ 1 0 00008000  \n"
    "lassie n 1 1 @i 1 0 00007000  \n"
    "mammal n 1 2 @ ~ 1 1 00003000  \n"
    "pet n 1 1 @ 1 0 00006000  \n"
)


def _write(root: Path, data: str = DATA, index: str | None = INDEX) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "data.noun").write_text(HEADER + data, encoding="utf-8")
    if index is not None:
        (root / "index.noun").write_text(index, encoding="utf-8")
    return root


@pytest.fixture
def nouns(tmp_path: Path) -> wn.WordNetNouns:
    return wn.load_wordnet_nouns(_write(tmp_path / "wordnet"))


def test_parse_fields(nouns: wn.WordNetNouns) -> None:
    s = nouns.synsets
    assert sorted(s) == [1740, 2000, 3000, 4000, 5000, 6000, 7000, 8000]  # header lines skipped
    dog = s[4000]
    assert len(dog.words) == 10 and dog.words[0] == "dog" and dog.words[-1] == "tyke"  # hex w_cnt 0a
    assert dog.hypernyms == (3000, 6000) and dog.instance_hypernyms == ()  # %p, +, ~i ignored
    assert dog.lex_filenum == 5 and dog.gloss == "a member of the genus Canis"
    assert s[2000].gloss == 'a living organism | characterized by voluntary movement; "animals | plants"'
    assert s[7000].hypernyms == () and s[7000].instance_hypernyms == (4000,)
    assert s[1740].hypernyms == ()


def test_names_follow_index_sense_order(nouns: wn.WordNetNouns) -> None:
    assert nouns.names[4000] == "dog.n.01" and nouns.names[8000] == "dog.n.02"
    assert nouns.names[7000] == "lassie.n.01" and nouns.names[3000] == "mammal.n.01"
    assert nouns.offset("mammal.n.01") == 3000
    with pytest.raises(KeyError):
        nouns.offset("unicorn.n.01")


def test_ancestors_with_and_without_instances(nouns: wn.WordNetNouns) -> None:
    anc = wn.ancestors(nouns.synsets)
    assert anc[4000] == {3000, 2000, 1740, 6000}  # two parents (a DAG), both chains
    assert anc[7000] == {4000, 3000, 2000, 1740, 6000}
    assert anc[1740] == frozenset()
    assert wn.ancestors(nouns.synsets, include_instances=False)[7000] == frozenset()


def test_closure_and_subtree(nouns: wn.WordNetNouns) -> None:
    full = wn.closure(nouns.synsets)
    assert full.num_nodes == 8
    assert full.num_edges == sum(len(a) for a in wn.ancestors(nouns.synsets).values()) == 18
    sub = wn.subtree(nouns.synsets, 3000, names=nouns.names)
    assert sub.names == ("mammal.n.01", "dog.n.01", "cat.n.01", "lassie.n.01")
    named = {(sub.names[u], sub.names[v]) for u, v in sub.edges}
    # pet.n.01 is an ancestor of dog but outside the subtree: no pair to it
    assert named == {
        ("dog.n.01", "mammal.n.01"),
        ("cat.n.01", "mammal.n.01"),
        ("lassie.n.01", "dog.n.01"),
        ("lassie.n.01", "mammal.n.01"),
    }
    no_inst = wn.subtree(nouns.synsets, 3000, include_instances=False)
    assert (no_inst.num_nodes, no_inst.num_edges) == (3, 2)
    ex = wn.subtree(nouns.synsets, 3000, exclude=[5000])
    assert (ex.num_nodes, ex.num_edges) == (3, 3)
    with pytest.raises(KeyError):
        wn.subtree(nouns.synsets, 9999)


def test_missing_database_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="apt-get install wordnet-base"):
        wn.load_wordnet_nouns(tmp_path / "nowhere")
    names_only = _write(tmp_path / "noindex", index=None)  # index.noun is optional (names fall back to offsets)
    assert wn.load_wordnet_nouns(names_only).names[4000] == "n.00004000"
    nested = _write(tmp_path / "WordNet-3.0" / "dict")  # the Princeton tarball's layout
    assert wn.find_wordnet_dir(tmp_path / "WordNet-3.0") == nested


def test_bad_lines_raise(tmp_path: Path) -> None:
    bad = _write(tmp_path / "bad", DATA + "00009000 05 n 03 only_one 0 000 | gloss\n")
    with pytest.raises(ValueError, match=r"data.noun:11"):
        wn.load_wordnet_nouns(bad)
    verb = _write(tmp_path / "verb", "00009000 29 v 01 run 0 000 | move fast\n")
    with pytest.raises(ValueError, match="not a noun"):
        wn.load_wordnet_nouns(verb)
    cycle = DATA.replace("00001740 03 n 01 entity 0 003", "00001740 03 n 01 entity 0 004 @ 00003000 n 0000")
    with pytest.raises(ValueError, match="cycle"):
        wn.ancestors(wn.load_wordnet_nouns(_write(tmp_path / "cycle", cycle)).synsets)
    dangling = DATA.replace("@ 00003000 n 0000 @ 00006000", "@ 00003000 n 0000 @ 00006001")
    with pytest.raises(ValueError, match="not in the data"):
        wn.ancestors(wn.load_wordnet_nouns(_write(tmp_path / "dangling", dangling)).synsets)


@pytest.mark.slow  # parses the real 82k-synset database (~5-7 s)
@pytest.mark.skipif(
    not Path("/usr/share/wordnet/data.noun").is_file(),
    reason="WordNet 3.0 not installed (apt-get install wordnet-base)",
)
def test_installed_wordnet_mammals() -> None:
    nouns = wn.load_wordnet_nouns()
    assert len(nouns.synsets) == 82115
    mammal = nouns.offset("mammal.n.01")
    assert mammal == 1861778 and nouns.synsets[mammal].words == ("mammal", "mammalian")
    g = wn.subtree(nouns.synsets, mammal)
    assert (g.num_nodes, g.num_edges) == (1182, 6542)
    g0 = wn.subtree(nouns.synsets, mammal, include_instances=False)
    assert (g0.num_nodes, g0.num_edges) == (1170, 6448)

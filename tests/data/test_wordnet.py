"""WordNet noun and verb database parser, closures and subtrees (``lorentzcv.data.wordnet``) on a hand-written fixture
in the real ``data.noun``/``index.noun``/``data.verb`` format (``wndb(5)``), plus the installed WordNet 3.0 when present."""

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
def nouns(tmp_path: Path) -> wn.WordNetHierarchy:
    return wn.load_wordnet(_write(tmp_path / "wordnet"))


def test_parse_fields(nouns: wn.WordNetHierarchy) -> None:
    s = nouns.synsets
    assert sorted(s) == [1740, 2000, 3000, 4000, 5000, 6000, 7000, 8000]  # header lines skipped
    dog = s[4000]
    assert len(dog.words) == 10 and dog.words[0] == "dog" and dog.words[-1] == "tyke"  # hex w_cnt 0a
    assert dog.hypernyms == (3000, 6000) and dog.instance_hypernyms == ()  # %p, +, ~i ignored
    assert dog.lex_filenum == 5 and dog.gloss == "a member of the genus Canis"
    assert s[2000].gloss == 'a living organism | characterized by voluntary movement; "animals | plants"'
    assert s[7000].hypernyms == () and s[7000].instance_hypernyms == (4000,)
    assert s[1740].hypernyms == ()


def test_names_follow_index_sense_order(nouns: wn.WordNetHierarchy) -> None:
    assert nouns.names[4000] == "dog.n.01" and nouns.names[8000] == "dog.n.02"
    assert nouns.names[7000] == "lassie.n.01" and nouns.names[3000] == "mammal.n.01"
    assert nouns.offset("mammal.n.01") == 3000
    with pytest.raises(KeyError):
        nouns.offset("unicorn.n.01")


def test_ancestors_with_and_without_instances(nouns: wn.WordNetHierarchy) -> None:
    anc = wn.ancestors(nouns.synsets)
    assert anc[4000] == {3000, 2000, 1740, 6000}  # two parents (a DAG), both chains
    assert anc[7000] == {4000, 3000, 2000, 1740, 6000}
    assert anc[1740] == frozenset()
    assert wn.ancestors(nouns.synsets, include_instances=False)[7000] == frozenset()


def test_closure_and_subtree(nouns: wn.WordNetHierarchy) -> None:
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
        wn.load_wordnet(tmp_path / "nowhere")
    names_only = _write(tmp_path / "noindex", index=None)  # index.noun is optional (names fall back to offsets)
    assert wn.load_wordnet(names_only).names[4000] == "n.00004000"
    nested = _write(tmp_path / "WordNet-3.0" / "dict")  # the Princeton tarball's layout
    assert wn.find_wordnet_dir(tmp_path / "WordNet-3.0") == nested


def test_bad_lines_raise(tmp_path: Path) -> None:
    bad = _write(tmp_path / "bad", DATA + "00009000 05 n 03 only_one 0 000 | gloss\n")
    with pytest.raises(ValueError, match=r"data.noun:11"):
        wn.load_wordnet(bad)
    verb = _write(tmp_path / "verb", "00009000 29 v 01 run 0 000 | move fast\n")
    with pytest.raises(ValueError, match="is not 'n'"):
        wn.load_wordnet(verb)
    cycle = DATA.replace("00001740 03 n 01 entity 0 003", "00001740 03 n 01 entity 0 004 @ 00003000 n 0000")
    with pytest.raises(ValueError, match="cycle"):
        wn.ancestors(wn.load_wordnet(_write(tmp_path / "cycle", cycle)).synsets)
    dangling = DATA.replace("@ 00003000 n 0000 @ 00006000", "@ 00003000 n 0000 @ 00006001")
    with pytest.raises(ValueError, match="not in the data"):
        wn.ancestors(wn.load_wordnet(_write(tmp_path / "dangling", dangling)).synsets)


# verbs: breathe 1740 (a root with hyponyms), respire 2325 and 2573 below it, run 9000 isolated; a verb line
# carries sentence frames ("02 + 02 00 + 08 00") after its pointers, a noun pointer ("+ ... n") is ignored
VERB_DATA = (
    "00001740 29 v 04 breathe 0 take_a_breath 0 respire 0 suspire 3 004 ~ 00002325 v 0000 ~ 00002573 v 0000 "
    "+ 00831191 n 0303 $ 00002325 v 0000 02 + 02 00 + 08 00 | draw air into, and expel out of, the lungs  \n"
    "00002325 29 v 01 respire 1 002 $ 00001740 v 0000 @ 00001740 v 0000 01 + 02 00 | undergo respiration  \n"
    "00002573 29 v 01 respire 2 002 @ 00001740 v 0000 @ 00002325 v 0000 01 + 02 00 | breathe easily again  \n"
    "00009000 38 v 01 run 0 000 01 + 01 00 | move fast by using one's feet  \n"
)
VERB_INDEX = "breathe v 1 2 @ ~ 1 1 00001740  \nrespire v 3 2 @ $ 3 0 00001740 00002325 00002573  \n"


def test_verbs_parse_and_close_without_isolated_synsets(tmp_path: Path) -> None:
    root = _write(tmp_path / "wordnet")
    (root / "data.verb").write_text(HEADER + VERB_DATA, encoding="utf-8")
    (root / "index.verb").write_text(VERB_INDEX, encoding="utf-8")
    verbs = wn.load_wordnet(root, pos="verb")
    assert verbs.pos == "verb" and len(verbs.synsets) == 4
    assert verbs.synsets[2573].hypernyms == (1740, 2325)
    assert verbs.synsets[1740].hypernyms == () and verbs.synsets[1740].words[0] == "breathe"
    assert verbs.names[2325] == "respire.v.02" and verbs.offset("breathe.v.01") == 1740
    g = wn.closure(verbs.synsets, names=verbs.names)
    assert g.nodes == (1740, 2325, 2573)  # run.v.01 is in no pair
    assert {(g.names[u], g.names[v]) for u, v in g.edges} == {
        ("respire.v.02", "breathe.v.01"),
        ("respire.v.03", "breathe.v.01"),
        ("respire.v.03", "respire.v.02"),
    }
    with pytest.raises(ValueError, match="pos must be one of"):
        wn.load_wordnet(root, pos="adjective")
    with pytest.raises(FileNotFoundError, match=r"data\.verb"):
        wn.load_wordnet(_write(tmp_path / "nouns_only"), pos="verb")


@pytest.mark.slow  # parses the real 82k-synset database (~5-7 s)
@pytest.mark.skipif(
    not Path("/usr/share/wordnet/data.noun").is_file(),
    reason="WordNet 3.0 not installed (apt-get install wordnet-base)",
)
def test_installed_wordnet_mammals() -> None:
    nouns = wn.load_wordnet()
    assert len(nouns.synsets) == 82115
    mammal = nouns.offset("mammal.n.01")
    assert mammal == 1861778 and nouns.synsets[mammal].words == ("mammal", "mammalian")
    g = wn.subtree(nouns.synsets, mammal)
    assert (g.num_nodes, g.num_edges) == (1182, 6542)
    g0 = wn.subtree(nouns.synsets, mammal, include_instances=False)
    assert (g0.num_nodes, g0.num_edges) == (1170, 6448)


@pytest.mark.slow  # parses the real 13.8k-synset verb database (~1 s)
@pytest.mark.skipif(
    not Path("/usr/share/wordnet/data.verb").is_file(),
    reason="WordNet 3.0 not installed (apt-get install wordnet-base)",
)
def test_installed_wordnet_verbs_match_nickel_kiela_2018_counts() -> None:
    verbs = wn.load_wordnet(pos="verb")
    assert len(verbs.synsets) == 13767
    g = wn.closure(verbs.synsets)
    assert (g.num_nodes, g.num_edges) == (13542, 35079)  # N&K 2018, Table 1

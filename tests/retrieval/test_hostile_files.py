"""`harmonygraph index add` on hostile folders, through the CLI and the real Postgres.

A bad file (JSON nested 100,000 deep, a CSV field over the csv module's limit, a FIFO)
is skipped with the reason and the others are indexed; symbolic links inside a folder
are not followed unless asked; a large text file is streamed (its memory bound is
tested in test_loading.py, measured in bench/retrieval_stream_bench.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest


@pytest.fixture
def hostile_dir(tmp_path: Path) -> tuple[Path, Path]:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("TOPSECRET zebracorn password hash\n")
    (outside / "more").mkdir()
    (outside / "more" / "also.txt").write_text("hidden quokkaplatypus notes\n")
    root = tmp_path / "docs"
    root.mkdir()
    (root / "good.md").write_text("# Leave\n\nParents may take sixteen weeks of leave.\n")
    (root / "notes.txt").write_text("The board approved the budget.\n")
    (root / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (root / "deep500.json").write_text("[" * 500 + "1" + "]" * 500)
    (root / "bigint.json").write_text('{"n": ' + "9" * 5000 + "}")
    (root / "bigfield.csv").write_text('a,b\n1,"' + "x" * 140_000 + '"\n')
    os.mkfifo(root / "pipe.txt")
    (root / "shadow.txt").symlink_to(outside / "secret.txt")
    (root / "linked").symlink_to(outside / "more", target_is_directory=True)
    return root, outside


def _index(args: list[str]) -> tuple[int, str, str]:
    from harmonygraph.tools.retrieval.cli import index_app
    from typer.testing import CliRunner

    res = CliRunner().invoke(index_app, args)
    return res.exit_code, res.stdout, res.stderr


def test_index_add_skips_bad_files_and_links_and_goes_on(
    pg_url: str, hostile_dir: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = hostile_dir
    monkeypatch.setenv("DATABASE_URL", pg_url)
    coll = f"hostile-{root.parent.name[-8:]}"
    code, out, err = _index(["add", str(root), "-c", coll, "--embedder", "hashing", "--json"])
    assert code == 1, out + err  # some files were skipped; the others are stored
    report = json.loads(out)
    assert report["counts"] == {"added": 2, "error": 5, "skipped": 2}, report
    why = {Path(s["source"]).name: s["reason"] for s in report["skipped"]}
    assert "nested too deeply" in why["deep.json"]
    assert "nested more than 100 levels deep" in why["deep500.json"]
    assert "unusable JSON" in why["bigint.json"]
    assert "field larger than field limit" in why["bigfield.csv"]
    assert "not a regular file" in why["pipe.txt"]
    for link in ("shadow.txt", "linked"):
        assert "a symbolic link" in why[link] and "--follow-links" in why[link]
    assert "Traceback" not in out + err

    # Nothing behind the links became searchable.
    for word in ("zebracorn", "quokkaplatypus"):
        code, out, _ = _index(["search", word, "-c", coll, "--mode", "text", "--json"])
        assert code == 0 and json.loads(out) == []
    code, out, _ = _index(["search", "sixteen weeks", "-c", coll, "--mode", "text", "--json"])
    assert code == 0 and json.loads(out)[0]["title"] == "Leave"

    # Plain text output: one line per skipped file, the summary counts them.
    code, out, err = _index(["add", str(root), "-c", coll, "--embedder", "hashing"])
    assert code == 1 and "Traceback" not in out + err
    assert "2 unchanged" in out and "5 error" in out and "2 skipped" in out
    assert sum(line.startswith("skipped ") for line in err.splitlines()) == 7

    # Asked explicitly, links are followed (to files and folders alike).
    code, out, err = _index(
        ["add", str(root), "-c", coll + "-f", "--embedder", "hashing", "--follow-links", "--json"]
    )
    assert json.loads(out)["counts"] == {"added": 4, "error": 5}, out
    for word in ("zebracorn", "quokkaplatypus"):
        code, out, _ = _index(["search", word, "-c", coll + "-f", "--mode", "text", "--json"])
        assert len(json.loads(out)) == 1


def test_a_link_named_on_the_command_line_is_the_users_choice(
    pg_url: str, hostile_dir: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = hostile_dir
    monkeypatch.setenv("DATABASE_URL", pg_url)
    coll = f"named-{root.parent.name[-8:]}"
    code, out, _ = _index(
        ["add", str(root / "shadow.txt"), "-c", coll, "--embedder", "hashing", "--json"]
    )
    assert code == 0 and json.loads(out)["counts"] == {"added": 1}


async def test_a_large_text_file_is_streamed_through_postgres(
    pg_url: str, collection_name: str, tmp_path: Path
) -> None:
    """A text file over `stream_bytes` goes through read, chunk, embed and write a
    segment at a time, in one transaction; what is stored is the file's text."""
    from harmonygraph.tools.retrieval import HashingEmbedder, RetrievalStore, load_path

    path = tmp_path / "big.txt"
    words = "alpha beta gamma delta policy server budget leave revenue board".split()
    with path.open("w") as f:
        for i in range(1500):
            f.write(" ".join(words[(i + k) % 10] for k in range(60)) + f" row{i}.\r\n\r\n\r\n")
    store = RetrievalStore(pg_url, embedder=HashingEmbedder(), stream_bytes=100_000)
    async with store:
        (res,) = await store.add_paths([path], collection=collection_name)
        assert res.status == "added" and res.chunks > 100, res
        text = load_path(path).text
        async with store._connection() as conn:
            cur = await conn.execute(
                "SELECT c.chunk_index, c.text, c.char_start, c.char_end, d.n_chars, d.title"
                " FROM rag_chunks c JOIN rag_documents d ON d.id = c.document_id"
                " WHERE d.id = %s ORDER BY c.chunk_index",
                (res.document_id,),
            )
            rows = await cur.fetchall()
        assert [r[0] for r in rows] == list(range(res.chunks))
        assert all(t == text[a:b] for _, t, a, b, _, _ in rows)  # offsets into the file's text
        assert rows[0][4] == len(text) and rows[0][5] == "big.txt"
        assert rows[-1][3] == len(text)
        hits = await store.search("row1499", collection=collection_name, mode="text")
        assert hits and "row1499" in hits[0].text
        (again,) = await store.add_paths([path], collection=collection_name)
        assert again.status == "unchanged"
        with path.open("a") as f:
            f.write("one more paragraph about zanzibar\n")
        (changed,) = await store.add_paths([path], collection=collection_name)
        assert changed.status == "replaced" and changed.document_id == res.document_id
        coll = await store.get_collection(collection_name)
        assert coll.documents == 1 and coll.chunks == changed.chunks

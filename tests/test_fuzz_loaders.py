"""Property-based corruption of small real files, for every loader and the cache.

Each case truncates a file, flips a byte, duplicates a line, injects a non-finite number or
shuffles header lines, then loads. The outcome must match the simple reference readers of
tests/fuzz_reference.py: the arrays they read from the corrupted text (identical to the clean load
when the corruption is neutral), or a DataFormatError where they find the file invalid. Never
another exception, never a silent change. Fixtures are slices of the shared data written to tmp.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections import Counter
from pathlib import Path

import fuzz_reference as ref
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labelchain.envs.data.errors import DataFormatError
from labelchain.envs.data.loading import REPO_ROOT, load_dataset
from labelchain.envs.data.multilabel import read_mulan_xml
from labelchain.envs.data.reuters import parse_sgml
from labelchain.envs.data.textformats import write_xc

DATA = Path(os.environ.get("LABELCHAIN_DATA") or REPO_ROOT.parent / "shared" / "data")  # as conftest's DATA_DIR
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not DATA.is_dir(), reason=f"shared benchmark data not found at {DATA}"),
]
FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FLIP_BYTES = b"0123456789.,-+eEnaif{}%:? \n\r\t'\x00\xa0\xff"
RENUMBER = ["0", "1", "1.0", "1e0", "+1", "-0", "2", "-1", "0.4", "7"]
NON_FINITE = ["nan", "NaN", "inf", "-inf", "Infinity", "1e39", "?"]
OUTCOMES: Counter[str] = Counter()  # cases per outcome, printed at the end of the module (-s)
MARKUP = re.compile(rb"[<>{}@:,\n\"]")
NUMBER = re.compile(rb"(?<=[,{ :])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?=[,} \n])")


@pytest.fixture(scope="module", autouse=True)
def _count_cases():
    yield
    print(
        f"\nfuzz cases: {sum(v for k, v in OUTCOMES.items() if not k.startswith('file'))} "
        f"{dict(sorted(OUTCOMES.items()))}"
    )


def _arff_slice(path: Path, n_rows: int) -> str:
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().lower() == "@data") + 1
    rows = [line for line in lines[start:] if line.strip()][:n_rows]
    return "\n".join(lines[:start] + rows) + "\n"


@pytest.fixture(scope="module")
def sources() -> dict[str, str]:
    """Texts of the fuzzed files, sliced from the shared data (never copied into the repo)."""
    emotions, corel = DATA / "mulan" / "emotions", DATA / "mulan" / "corel5k"
    out = {
        "dense_train": _arff_slice(emotions / "emotions-train.arff", 40),
        "dense_test": _arff_slice(emotions / "emotions-test.arff", 20),
        "dense_xml": (emotions / "emotions.xml").read_text(),
        "sparse_train": _arff_slice(corel / "Corel5k-train-sparse.arff", 30),
        "sparse_test": _arff_slice(corel / "Corel5k-test-sparse.arff", 15),
        "sparse_xml": (corel / "Corel5k.xml").read_text(),
    }
    for part in ("train", "test"):  # MEKA: labels from -C, declared numeric so only 0/1 guards them
        meka = out[f"dense_{part}"].replace("@relation musicout", "@relation 'musicout: -C -6'")
        out[f"meka_{part}"] = re.sub(r"(@attribute [a-z-]+) \{0,1\}", r"\1 numeric", meka)
    sgml = (DATA / "reuters21578" / "reut2-000.sgm").read_bytes().decode("latin-1")
    out["sgml"] = sgml[: [m.end() for m in re.finditer("</REUTERS>", sgml)][5]] + "\n"
    return out


@pytest.fixture(scope="module")
def text_sources(sources: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """XC and LIBSVM files made from the corel5k slice (no such files ship in the shared data)."""
    folder = tmp_path_factory.mktemp("corel")
    (folder / "c-train.arff").write_text(sources["sparse_train"])
    (folder / "c-test.arff").write_text(sources["sparse_test"])
    (folder / "c.xml").write_text(sources["sparse_xml"])
    ds = load_dataset(folder, cache=False)
    out = {}
    for part in ("train", "test"):
        split = getattr(ds, part)
        X = split.X.multiply(np.arange(1, ds.n_features + 1, dtype=np.float32) / 7).tocsr()  # varied values
        write_xc(folder / f"{part}.txt", X, split.Y)
        out[f"xc_{part}"] = (folder / f"{part}.txt").read_text()
        lines = []
        for row in range(X.shape[0]):
            labels = ",".join(str(3 * j + 2) for j in split.Y[row].indices)
            features = " ".join(f"{j + 1}:{v:.6g}" for j, v in zip(X[row].indices, X[row].data))
            lines.append(f"{labels} {features}".strip())
        out[f"libsvm_{part}"] = "\n".join(lines) + "\n"
    return out


def corrupt(data: st.DataObject, raw: bytes, header_lines: int | None) -> bytes:
    """One corruption of `raw`, drawn by Hypothesis; header_lines: how many lines shuffle may permute."""
    numbers = list(NUMBER.finditer(raw, raw.find(b"@data") + 1 if b"@data" in raw else 0))
    body = max(0, raw.find(b"@data"))  # ARFF: bias half the flips and duplications to the data rows
    body_line = raw[:body].count(b"\n")
    kinds = (
        ["truncate", "flip", "flip_markup", "duplicate_line", "duplicate_item"]
        + (["non_finite", "renumber"] if numbers else [])
        + (["shuffle_header"] if header_lines else [])
    )
    kind = data.draw(st.sampled_from(kinds), label="kind")
    if kind == "truncate":
        return raw[: data.draw(st.integers(0, len(raw)), label="cut at")]
    if kind.startswith("flip"):  # anywhere, or within 3 bytes of a structural character
        if kind == "flip":
            at = data.draw(st.integers(0, len(raw) - 1) | st.integers(body, len(raw) - 1), label="flip at")
        else:
            marks = [m.start() for m in MARKUP.finditer(raw)]
            at = min(
                len(raw) - 1, max(0, marks[data.draw(st.integers(0, len(marks) - 1))] + data.draw(st.integers(-3, 3)))
            )
        byte = data.draw(st.sampled_from(FLIP_BYTES) | st.integers(0, 255), label="byte")
        return raw[:at] + bytes([byte]) + raw[at + 1 :]
    lines = raw.split(b"\n")
    if kind == "duplicate_item":  # repeat one comma- or space-separated item of a line in place
        at = data.draw(st.integers(0, len(lines) - 1) | st.integers(body_line, len(lines) - 1), label="line")
        sep = data.draw(st.sampled_from([b",", b" "]), label="separator")
        items = lines[at].split(sep)
        k = data.draw(st.integers(0, len(items) - 1), label="item")
        lines[at] = sep.join(items[: k + 1] + items[k:])
        return b"\n".join(lines)
    if kind == "duplicate_line":
        at = data.draw(st.integers(0, len(lines) - 1) | st.integers(body_line, len(lines) - 1), label="line")
        return b"\n".join(lines[: at + 1] + lines[at:])
    if kind in ("non_finite", "renumber"):  # any number or a row's last one (a label in emotions)
        last = [i for i, m in enumerate(numbers) if raw[m.end() : m.end() + 1] == b"\n"] or [0]
        match = numbers[data.draw(st.integers(0, len(numbers) - 1) | st.sampled_from(last), label="number")]
        token = data.draw(st.sampled_from(NON_FINITE if kind == "non_finite" else RENUMBER), label="token").encode()
        return raw[: match.start()] + token + raw[match.end() :]
    order = data.draw(st.permutations(range(header_lines)), label="header order")
    return b"\n".join([lines[i] for i in order] + lines[header_lines:])


def _header_lines(text: str) -> int:
    return next(i for i, line in enumerate(text.splitlines()) if line.strip().lower() == "@data")


def _dense(X) -> np.ndarray:
    return X.toarray() if sp.issparse(X) else np.asarray(X)


def _arrays(ds) -> tuple:
    return (_dense(ds.train.X), ds.train.Y.toarray(), _dense(ds.test.X), ds.test.Y.toarray())


def check(load, expect) -> None:
    """load() must give what expect() says, or DataFormatError where expect() raises Invalid."""
    try:
        wanted = expect()
    except ref.Invalid:
        OUTCOMES["invalid: DataFormatError"] += 1
        with pytest.raises(DataFormatError):
            load()
        return
    OUTCOMES["valid: arrays checked against the reference"] += 1
    got = load()
    for a, b in zip(_arrays(got), wanted[:4]):
        assert a.shape == b.shape and np.array_equal(a, b.astype(a.dtype)), "silent change of the arrays"
    if len(wanted) > 4:
        assert got.label_names == wanted[4]
    if len(wanted) > 5:
        assert got.feature_names == wanted[5]


def check_weak(load, clean) -> None:
    """Outside the reference's subset: DataFormatError, or the clean labels with the clean features
    (or features whose change the loader announced in Dataset.metadata["notes"])."""
    try:
        got = load()
    except DataFormatError:
        OUTCOMES["outside the reference: DataFormatError"] += 1
        return
    assert got.label_names == clean.label_names
    arrays, clean_arrays = _arrays(got), _arrays(clean)
    for a, b in zip(arrays[1::2], clean_arrays[1::2]):
        assert a.shape == b.shape and np.array_equal(a, b), "silent change of the labels"
    if got.metadata.get("notes"):  # e.g. a damaged type that now reads as a 3-valued nominal: one-hot, logged
        OUTCOMES["outside the reference: loaded, feature change announced"] += 1
        return
    OUTCOMES["outside the reference: loaded unchanged"] += 1
    for a, b in zip(arrays[0::2], clean_arrays[0::2]):
        assert a.shape == b.shape and np.array_equal(a, b), "silent change of the features"


def _write(folder: Path, files: dict[str, bytes | str]) -> Path:
    for name, content in files.items():
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode("latin-1"))
    return folder


@pytest.mark.parametrize("kind, max_examples", [("dense", 150), ("sparse", 150), ("meka", 200)])
def test_fuzz_arff(sources: dict[str, str], kind: str, max_examples: int) -> None:
    names = {
        "train": f"x-train{'-sparse' if kind == 'sparse' else ''}.arff",
        "test": f"x-test{'-sparse' if kind == 'sparse' else ''}.arff",
    }
    xml = sources.get(f"{kind}_xml")
    with tempfile.TemporaryDirectory() as tmp:
        labels = None if xml is None else read_mulan_xml(_write(Path(tmp), {"x.xml": xml}) / "x.xml")
    train, test = sources[f"{kind}_train"], sources[f"{kind}_test"]
    with tempfile.TemporaryDirectory() as tmp:
        clean = load_dataset(
            _write(Path(tmp), {names["train"]: train, names["test"]: test, **({"x.xml": xml} if xml else {})}),
            cache=False,
        )
    header = _header_lines(train)

    @settings(FUZZ, max_examples=max_examples)
    @given(data=st.data(), target=st.sampled_from(["train", "test"] + (["xml"] if xml else [])))
    def run(data: st.DataObject, target: str) -> None:
        texts = {"train": train, "test": test, "xml": xml}
        raw = corrupt(data, texts[target].encode("latin-1"), header if target != "xml" else None)
        OUTCOMES[f"file {target}"] += 1
        with tempfile.TemporaryDirectory() as tmp:
            files = {names["train"]: train, names["test"]: test, **({"x.xml": xml} if xml else {})}
            files[names[target] if target != "xml" else "x.xml"] = raw
            folder = _write(Path(tmp), files)

            def load():
                return load_dataset(folder, cache=False)

            if target == "xml":
                return check_weak(load, clean)
            decoded = {t: texts[t] for t in ("train", "test")}
            decoded[target] = _decode(raw)
            try:
                check(load, lambda: ref.arff_dataset(decoded["train"], decoded["test"], labels))
            except ref.Unknown:
                check_weak(load, clean)

    run()


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


@pytest.mark.parametrize("kind", ["xc", "libsvm"])
def test_fuzz_text(text_sources: dict[str, str], kind: str) -> None:
    train, test = text_sources[f"{kind}_train"], text_sources[f"{kind}_test"]
    expect = ref.xc_dataset if kind == "xc" else ref.libsvm_dataset

    @settings(FUZZ, max_examples=120)
    @given(data=st.data(), target=st.sampled_from(["train", "test"]))
    def run(data: st.DataObject, target: str) -> None:
        texts = {"train": train, "test": test}
        raw = corrupt(data, texts[target].encode("latin-1"), 2 if kind == "xc" else 3)
        with tempfile.TemporaryDirectory() as tmp:
            folder = _write(Path(tmp), {f"{t}.txt": raw if t == target else texts[t] for t in texts})
            decoded = dict(texts, **{target: _decode(raw)})
            check(lambda: load_dataset(folder, cache=False), lambda: expect(decoded["train"], decoded["test"]))

    run()


# Tokens other readers take for numbers, and tokens long enough that a fixed-width array of them all
# would cost gigabytes: each must load as the reference reads it or be our located DataFormatError.
ODD_TOKENS = [
    "1_000", "1__0", "\u0661\u0662", "\u0663.\u0665", "\uff11", "\u0660", "1\u00a0", "\u20091", "\u00b2",
    "0x10", "1.0d", "1e5", "1E+5", "+.5", "5.", "-0", ".", "-", "e1", "1e-400", "1e400", "nan", "-Infinity",
    " 3 ", "\t2", "0" * 5_000 + "1", "-" + "0" * 300,
]  # fmt: skip


def odd_tokens() -> st.SearchStrategy[str]:
    """Odd spellings, runs of up to 60,000 digits (finite, infinite, integral or not), and short random
    text without the characters that are structure in every format (checked by the usual reference)."""
    runs = st.builds(
        lambda lead, digit, n: lead + digit * n,
        st.sampled_from(["", "0.", "-0.", ".", "1", "00", "+9"]),
        st.sampled_from("0159"),
        st.integers(20, 60_000),
    )
    text = st.text(
        st.characters(blacklist_characters=",{}:'\"\\\n\r%", blacklist_categories=("Cs",)), min_size=1, max_size=6
    )
    return st.one_of(st.sampled_from(ODD_TOKENS), runs, text)


@pytest.mark.parametrize("kind", ["dense", "sparse", "xc", "libsvm"])
def test_fuzz_long_and_odd_tokens(sources: dict[str, str], text_sources: dict[str, str], kind: str) -> None:
    """One number of a file replaced by an odd or long token (ARFF: in the data section; XC: not the header)."""
    arff = kind in ("dense", "sparse")
    texts = {t: (sources if arff else text_sources)[f"{kind}_{t}"] for t in ("train", "test")}
    suffix = "-sparse" if kind == "sparse" else ""
    names = {t: f"x-{t}{suffix}.arff" if arff else f"{t}.txt" for t in texts}
    xml = sources[f"{kind}_xml"] if arff else None
    with tempfile.TemporaryDirectory() as tmp:
        labels = read_mulan_xml(_write(Path(tmp), {"x.xml": xml}) / "x.xml") if xml else None
        clean = load_dataset(
            _write(Path(tmp), {names[t]: texts[t] for t in texts} | ({"x.xml": xml} if xml else {})), cache=False
        )

    @settings(FUZZ, max_examples=40)
    @given(data=st.data(), target=st.sampled_from(["train", "test"]), token=odd_tokens())
    def run(data: st.DataObject, target: str, token: str) -> None:
        raw = texts[target].encode("latin-1")
        start = raw.find(b"@data") if arff else (raw.find(b"\n") if kind == "xc" else 0)
        numbers = list(NUMBER.finditer(raw, start))
        match = numbers[data.draw(st.integers(0, len(numbers) - 1), label="number")]
        raw = raw[: match.start()] + token.encode("utf-8") + raw[match.end() :]
        OUTCOMES[f"file odd token {kind}"] += 1
        with tempfile.TemporaryDirectory() as tmp:
            files: dict[str, bytes | str] = {names[t]: texts[t] for t in texts} | ({"x.xml": xml} if xml else {})
            files[names[target]] = raw
            folder = _write(Path(tmp), files)
            decoded = dict(texts, **{target: _decode(raw)})
            if arff:
                expect = lambda: ref.arff_dataset(decoded["train"], decoded["test"], labels)  # noqa: E731
            else:
                reader = ref.xc_dataset if kind == "xc" else ref.libsvm_dataset
                expect = lambda: reader(decoded["train"], decoded["test"])  # noqa: E731

            def load():
                try:
                    return load_dataset(folder, cache=False)
                except DataFormatError as err:  # located: a token is on a line
                    assert err.line is not None and err.path == str(folder / names[target]), str(err)
                    raise

            try:
                check(load, expect)
            except ref.Unknown:
                check_weak(load, clean)

    run()


def _docs(docs) -> list[tuple]:
    return [(d.newid, d.lewis_split, d.has_topics, tuple(d.topics), d.text) for d in docs]


def test_fuzz_reuters_sgml(sources: dict[str, str]) -> None:
    raw_clean = sources["sgml"].encode("latin-1")
    with tempfile.TemporaryDirectory() as tmp:
        clean = _docs(parse_sgml(_write(Path(tmp), {"reut2-000.sgm": raw_clean}) / "reut2-000.sgm"))
    assert len(clean) == 6

    @settings(FUZZ, max_examples=120)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        raw = corrupt(data, raw_clean, None)
        with tempfile.TemporaryDirectory() as tmp:
            path = _write(Path(tmp), {"reut2-000.sgm": raw}) / "reut2-000.sgm"
            try:
                got = _docs(parse_sgml(path))
            except DataFormatError:
                OUTCOMES["DataFormatError"] += 1
                return
        OUTCOMES["parsed"] += 1
        if len(raw) < len(raw_clean) and raw_clean.startswith(raw):  # cut: between documents, or an error
            ends = [m.end() for m in re.finditer(b"</REUTERS>", raw)]
            assert not raw[ends[-1] if ends else 0 :].strip(b"\n ").replace(b'<!DOCTYPE lewis SYSTEM "lewis.dtd">', b"")
            assert got == clean[: len(ends)]
        else:  # at most the one document holding the change may differ, and none may vanish or merge
            assert len(got) == len(clean) and sum(a != b for a, b in zip(got, clean)) <= 1

    run()


def test_fuzz_cache(sources: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "ds").mkdir()  # dense X (.npy, no zip CRC) and CSR Y (.npz)
    folder = _write(
        tmp_path / "ds",
        {"e-train.arff": sources["dense_train"], "e-test.arff": sources["dense_test"], "e.xml": sources["dense_xml"]},
    )
    cache_dir = tmp_path / "cache"
    clean = load_dataset(folder, cache_dir=cache_dir)
    (entry,) = list(cache_dir.iterdir())
    stored = {p.name: p.read_bytes() for p in entry.iterdir()}

    @settings(FUZZ, max_examples=80)
    @given(data=st.data(), name=st.sampled_from(sorted(stored)))
    def run(data: st.DataObject, name: str) -> None:
        for file_name, content in stored.items():  # start each case from the sound entry
            (entry / file_name).write_bytes(content)
        (entry / name).write_bytes(corrupt(data, stored[name], None) if data.draw(st.booleans()) else b"")
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="labelchain.envs.data"):
            got = load_dataset(folder, cache_dir=cache_dir)
        for a, b in zip(_arrays(got), _arrays(clean)):
            assert np.array_equal(a, b)
        assert got.label_names == clean.label_names and got.feature_names == clean.feature_names
        assert len(caplog.records) <= 1 and all(str(entry) in r.getMessage() for r in caplog.records)
        OUTCOMES["cache: clean data back"] += 1

    run()

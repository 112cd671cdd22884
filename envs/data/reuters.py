"""Reuters-21578 (Distribution 1.0 SGML) -> the ModApte 90-topic dataset with TF-IDF features.

ModApte, as the collection's README defines it: LEWISSPLIT="TRAIN" / "TEST" with TOPICS="YES";
documents with no topic are dropped. The usual 90-label version then keeps the topics that have at
least one training and one test document, and the documents carrying at least one of them.
On the SGML files as distributed this gives 7,770 training and 3,019 test documents and exactly the
90 topics of the literature (same names as NLTK's ApteMod `reuters` corpus, same per-topic
training counts for the ten largest). The usual 7,769 is one training document fewer: it comes
from the repackaged "ApteMod" corpus, not from applying the README's rules to the SGML (9,603
TRAIN docs with TOPICS="YES", 7,775 of them with a topic, 5 of those carrying only topics absent
from the test split: 7,770). We apply the rules as written rather than drop an unidentified doc.

Document text: title + body; documents without <BODY> (TYPE="BRIEF"/"UNPROC") use the title and
whatever other text the <TEXT> element holds. SGML is decoded as latin-1 (the files are not valid
UTF-8), entities (&lt; &amp; &#3; ...) are unescaped and control characters become spaces.
TF-IDF is fitted on the training documents only, so no test vocabulary or document frequency leaks.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from labelchain.envs.data.dataset import Dataset, Split
from labelchain.envs.data.errors import DataFormatError

_DOC = re.compile(r"<REUTERS\b([^>]*)>(.*?)</REUTERS>", re.S)
_ATTR = re.compile(r'(\w+)="([^"]*)"')
_TOPICS = re.compile(r"<TOPICS>(.*?)</TOPICS>", re.S)
_D = re.compile(r"<D>(.*?)</D>", re.S)
_TEXT = re.compile(r"<TEXT\b[^>]*>(.*?)</TEXT>", re.S)
_TITLE = re.compile(r"<TITLE>(.*?)</TITLE>", re.S)
_BODY = re.compile(r"<BODY>(.*?)</BODY>", re.S)
_TAG = re.compile(r"<[^>]+>")
_DOCTYPE = re.compile(r"<!DOCTYPE[^>]*>")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

# Default featurizer options; part of the cache key, so changing them re-fits.
TFIDF_OPTIONS: dict = {
    "sublinear_tf": True,
    "stop_words": "english",
    "min_df": 2,
    "strip_accents": "unicode",
}


@dataclass
class ReutersDoc:
    newid: int
    lewis_split: str  # TRAIN, TEST or NOT-USED
    has_topics: bool  # the TOPICS="YES" attribute (not whether <TOPICS> is non-empty)
    topics: list[str]
    text: str
    line: int = 0  # line of the <REUTERS> tag in its file, for errors naming a document


def _clean(sgml: str) -> str:
    return _CONTROL.sub(" ", html.unescape(sgml)).strip()


def parse_sgml(path: str | Path) -> list[ReutersDoc]:
    """All <REUTERS> documents of one reut2-NNN.sgm file."""
    path = Path(path)
    text = path.read_bytes().decode("latin-1")
    docs = []
    end, end_line = 0, 1  # offset and line just after the previous document (counted incrementally)
    for match in _DOC.finditer(text):
        gap = text[end : match.start()]
        _check_between(gap, path, end_line)
        line = end_line + gap.count("\n")
        end, end_line = match.end(), line + match.group(0).count("\n")
        attrs = dict(_ATTR.findall(match.group(1)))
        for key in ("TOPICS", "LEWISSPLIT", "NEWID"):
            if key not in attrs:
                raise DataFormatError(
                    path,
                    f'<REUTERS> tag has no {key}="..." attribute; expected Distribution 1.0 SGML',
                    line=line,
                )
        _check_attributes(attrs, path, line)
        content = match.group(2)
        if "<REUTERS" in content:  # a damaged </REUTERS> would silently merge two documents
            raise DataFormatError(
                path,
                "<REUTERS> document opened before the previous one was closed",
                line=line + content[: content.index("<REUTERS")].count("\n"),
            )
        topics_block = _TOPICS.search(content)
        topics = [_clean(t) for t in _D.findall(topics_block.group(1))] if topics_block else []
        text_block = _TEXT.search(content)
        inner = text_block.group(1) if text_block else ""
        title, body = _TITLE.search(inner), _BODY.search(inner)
        if body is not None:
            doc_text = (_clean(title.group(1)) + "\n" if title else "") + _clean(body.group(1))
        else:  # BRIEF / UNPROC: title and whatever other text there is
            doc_text = _clean(_TAG.sub(" ", inner))
        docs.append(
            ReutersDoc(int(attrs["NEWID"]), attrs["LEWISSPLIT"], attrs["TOPICS"] == "YES", topics, doc_text, line)
        )
    if not docs:
        raise DataFormatError(path, "no <REUTERS ...>...</REUTERS> documents; expected Reuters-21578 SGML")
    _check_between(text[end:], path, end_line)
    return docs


def _check_between(gap: str, path: Path, first_line: int) -> None:
    """Only blanks and the DOCTYPE may sit between documents; anything else is a cut or damaged tag."""
    rest = _DOCTYPE.sub("", gap)
    if rest.strip():
        offset = len(rest) - len(rest.lstrip())
        raise DataFormatError(
            path,
            f"text outside a <REUTERS>...</REUTERS> document ({rest.strip()[:40]!r}); file cut short or a tag damaged?",
            line=first_line + rest[:offset].count("\n"),
        )


def _check_attributes(attrs: dict[str, str], path: Path, line: int) -> None:
    """The values ModApte reads; a damaged one would silently move a document out of its split."""
    allowed = {"TOPICS": ("YES", "NO", "BYPASS"), "LEWISSPLIT": ("TRAIN", "TEST", "NOT-USED")}
    for key, values in allowed.items():
        if attrs[key] not in values:
            raise DataFormatError(
                path, f"{key}={attrs[key]!r}; expected one of {values}", line=line, field=f"<REUTERS {key}>"
            )
    if not (attrs["NEWID"].isascii() and attrs["NEWID"].isdigit()):  # str.isdigit takes "²", int() not
        raise DataFormatError(path, f"NEWID={attrs['NEWID']!r} is not a number", line=line, field="<REUTERS NEWID>")


def sgml_files(folder: str | Path) -> list[Path]:
    return sorted(Path(folder).glob("reut2-*.sgm"))


def read_documents(files: list[Path]) -> list[ReutersDoc]:
    """Documents of all `files`; a NEWID seen twice is a DataFormatError naming both places.

    A stray copy such as `reut2-000 (1).sgm` matches the file pattern and would otherwise count
    every one of its documents twice, in training and test alike.
    """
    docs: list[ReutersDoc] = []
    first: dict[int, tuple[Path, int]] = {}
    for path in files:
        for doc in parse_sgml(path):
            if doc.newid in first:
                where, line = first[doc.newid]
                raise DataFormatError(
                    path,
                    f"NEWID={doc.newid} was already read from {where.name}, line {line}; expected each "
                    "document once (a duplicate file such as 'reut2-000 (1).sgm' in the folder?)",
                    line=doc.line,
                    field="<REUTERS NEWID>",
                )
            first[doc.newid] = (path, doc.line)
            docs.append(doc)
    return docs


def modapte_90(docs: list[ReutersDoc]) -> tuple[list[ReutersDoc], list[ReutersDoc], list[str]]:
    """(train docs, test docs, sorted topic names) of the ModApte split restricted to 90 topics."""
    train = [d for d in docs if d.lewis_split == "TRAIN" and d.has_topics and d.topics]
    test = [d for d in docs if d.lewis_split == "TEST" and d.has_topics and d.topics]
    in_train = {t for d in train for t in d.topics}
    in_test = {t for d in test for t in d.topics}
    kept = sorted(in_train & in_test)
    keep = set(kept)
    train = [d for d in train if keep.intersection(d.topics)]
    test = [d for d in test if keep.intersection(d.topics)]
    return train, test, kept


def _label_matrix(docs: list[ReutersDoc], column: dict[str, int]) -> sp.csr_matrix:
    rows, cols = [], []
    for i, doc in enumerate(docs):
        for topic in set(doc.topics):
            if topic in column:
                rows.append(i)
                cols.append(column[topic])
    data = np.ones(len(rows), dtype=bool)
    return sp.csr_matrix((data, (rows, cols)), shape=(len(docs), len(column)), dtype=bool)


def load_reuters(folder: str | Path, tfidf_options: dict | None = None) -> Dataset:
    """ModApte-90 Reuters-21578 with TF-IDF features (float32 CSR) fitted on the training texts."""
    files = sgml_files(folder)
    if not files:
        raise FileNotFoundError(f"no reut2-*.sgm files in {folder}")
    docs = read_documents(files)
    train, test, topics = modapte_90(docs)
    if not train or not test:
        raise DataFormatError(
            folder,
            f"ModApte gives {len(train)} training and {len(test)} test documents; "
            'expected both (LEWISSPLIT="TRAIN"/"TEST", TOPICS="YES", a topic in both)',
        )
    from sklearn.feature_extraction.text import TfidfVectorizer  # seconds to import: only once the files are sound

    vectorizer = TfidfVectorizer(dtype=np.float32, **(tfidf_options or TFIDF_OPTIONS))
    X_train = vectorizer.fit_transform([d.text for d in train]).tocsr()
    X_test = vectorizer.transform([d.text for d in test]).tocsr()
    column = {t: j for j, t in enumerate(topics)}
    return Dataset(
        name="reuters21578",
        train=Split(X_train, _label_matrix(train, column)),
        test=Split(X_test, _label_matrix(test, column)),
        label_names=topics,
        feature_names=[str(f) for f in vectorizer.get_feature_names_out()],
        source=str(folder),
    )

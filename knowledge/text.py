"""Text folding and segmentation for the robot's retrieval.

``normalise`` makes the many ways people type one question into one string: full-width → half-width (NFKC),
case folded, punctuation/emoji/control characters turned into spaces, error codes in one form (``E05``, ``e-05``,
``Ｅ－０５``, ``E 05`` → ``e-05``; ``Err 12``, ``ERR-12``, ``错误码12`` → ``err-12``), and the typo/lay-word map
(``data/typos.txt``) applied. ``tokens`` segments with jieba and the domain dictionary (``data/domain_dict.txt``),
keeping error codes whole and dropping stop words.
"""

from __future__ import annotations

import math
import re
import tempfile
import threading
import unicodedata
from functools import lru_cache
from pathlib import Path

import jieba

DATA = Path(__file__).parent / "data"
DOMAIN_DICT = DATA / "domain_dict.txt"
TYPOS = DATA / "typos.txt"

MAX_INPUT = 4000  # characters folded: a pasted log should not cost more than a question
MAX_TOKENISED = 200  # characters segmented: past this a message is noise for retrieval

# "e" must not be the end of an English word ("code 05"), hence the look-behind on letters.
_CODE = re.compile(
    r"(?<![a-z])(err(?:or)?|er|e|错误代码|错误码|故障码|错误)\s*[-_:#]?\s*0*(\d{1,4})(?![0-9])")
CODE_TOKEN = re.compile(r"(?:err|e)-\d{2,4}")
_SPACES = re.compile(r"\s+")

STOP_WORDS = frozenset("""
的 了 吗 呢 啊 吧 呀 哦 嘛 么 啦 哈 嗯 喔 哎 唉 诶 这 那 这个 那个 这台 那台 一下 一台 台 个 请问 请 麻烦 您 你 我 我们
他 她 它 是 就 都 还 也 又 在 有 和 与 跟 及 会 要 能 可以 怎么 怎么办 怎样 如何 咋 咋办 咋整 为什么 什么 啥 该 应该 一直 老是
总是 突然 现在 刚才 今天 了吗 没 得 地 着 过 把 被 让 给 上 下 里 中 时 时候 后 之后 然后 但是 可是 因为 所以 如果 the a
机器 东西 说 显示 提示 出现 好像 是不是 不是 怎么回事 咋回事 意思 问题 用不了 不行 弄 处理 办 一点 有点 很 太 好多 老 那块 那个
一个 一些 这样 那样 那么 这么 还是 已经 的话 起来 上来 下来 出来 一样 一直在 能不能 可不可以 是否 想 别 帮忙 帮 看看
to is of and
""".split())


def _load_typos() -> tuple[re.Pattern | None, dict[str, str]]:
    pairs: dict[str, str] = {}
    for line in TYPOS.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        wrong, _, right = line.partition("\t")
        # A word mapped to itself is kept as written: it shields a longer word from a shorter rule inside it.
        # A space in the canonical form keeps its parts separate words ("仪打不开" → "仪 无法开机").
        wrong, right = _fold(wrong.strip()), right.strip()
        if wrong and right:
            pairs[wrong] = right
    # A machine's name is said with "器" or "子" after it too ("血气机器", "呼吸机子", "监护仪器"): without these the
    # map would turn "血气机器" into "血气分析仪器", and segmentation would leave a stray "器" either way.
    for wrong, right in list(pairs.items()):
        for name, canonical in ((wrong, right), (right, right)):
            if name.endswith(("机", "仪")) and len(name) >= 3 and " " not in name:
                for longer in (name + "器", name + "子"):
                    pairs.setdefault(longer, canonical)
    if not pairs:
        return None, pairs
    return _longest_first(pairs), pairs


def _longest_first(words) -> re.Pattern:
    """A regex matching, at the leftmost position, the longest of ``words`` — what an alternation sorted longest first
    matches — written as a trie ("呼(?:吸(?:器|…)|…)"): a flat alternation of hundreds of words tries each of them at
    every position of every text, the trie one character at a time (the typo pass was 8/10 of folding a text)."""
    trie: dict = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}  # a word ends here

    def pattern(node: dict) -> str:
        branches = [re.escape(ch) + pattern(child) for ch, child in node.items() if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        # A word ending here is the fallback: the greedy "?" tries the longer words through this node first.
        return f"(?:{body})?" if "" in node else body

    return re.compile(pattern(trie))


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


# Separators: punctuation (P*), symbols incl. emoji (S*), controls/format/surrogates/private (C*), marks (M*) left
# alone by NFKC (emoji modifiers, variation selectors) and spaces (Z*) — every character that is neither a letter nor
# a number, which is exactly what a Unicode regex's ``[\W_]`` matches (checked over every code point in the tests);
# one regex pass instead of a category lookup per character.
_SEPARATOR = re.compile(r"[\W_]")


def _spaced(text: str) -> str:
    return _SEPARATOR.sub(" ", text)


def _code(match: re.Match) -> str:
    prefix = "e" if match.group(1) == "e" else "err"
    return f" {prefix}-{int(match.group(2)):02d} "


def normalise(text: str) -> str:
    """One folded form of a question (see the module doc); ``""`` for nothing readable."""
    if not text:
        return ""
    folded = _fold(str(text)[:MAX_INPUT])
    # Codes first: their hyphens and spaces are punctuation to everything else.
    pieces, last = [], 0
    for match in _CODE.finditer(folded):
        pieces.append(_spaced(folded[last:match.start()]))
        pieces.append(_code(match))
        last = match.end()
    pieces.append(_spaced(folded[last:]))
    joined = "".join(pieces)
    typo_re, typos = _TYPOS
    if typo_re is not None:
        # Twice, so that forms compose: "开机键没有任何反应" → "电源键没反应" → "无法开机".
        for _ in range(2):
            joined, changed = typo_re.subn(lambda m: typos[m.group(0)], joined)
            if not changed:
                break
    return _SPACES.sub(" ", joined).strip()


_TYPOS = _load_typos()
# A bed, floor, room, ward or hour by number ("3床", "12号床", "5楼", "二病区", "8点") says where or when, not what is
# wrong; jieba cuts it whole or as number + word. (Ward and department names were tried too: cross-validation on the
# calibration split lost lay questions and declines with them, since "检验科" or "供应室" hint at the device.)
_NUMBER = re.compile(r"[0-9一二三四五六七八九十两]+")
_PLACE_OR_TIME = re.compile(r"号床|床|号楼|楼|层|病区|区|号房|房|间|室|点钟|点|分钟|小时")
_NUMBERED_PLACE_OR_TIME = re.compile(rf"(?:{_NUMBER.pattern})(?:{_PLACE_OR_TIME.pattern})")
_DOMAIN_WORDS = frozenset(
    {line.split()[0] for line in DOMAIN_DICT.read_text(encoding="utf-8").splitlines() if line.strip()}
    | {w for right in _TYPOS[1].values() for w in right.split()})
_jieba_lock = threading.Lock()
_jieba_ready = False


def _ensure_jieba() -> None:
    """Load jieba's model and our dictionary once per process (jieba keeps a cache file: a writable temp dir)."""
    global _jieba_ready
    if _jieba_ready:
        return
    with _jieba_lock:
        if _jieba_ready:
            return
        jieba.setLogLevel(60)
        jieba.dt.tmp_dir = tempfile.gettempdir()
        jieba.initialize()
        jieba.load_userdict(str(DOMAIN_DICT))
        for right in _TYPOS[1].values():
            if " " not in right:
                jieba.add_word(right, freq=20000)
        _jieba_ready = True


# Large enough for a big knowledge base's chunks (brand names, fault phrases repeat across entries): every worker
# rebuilds its index at each change of the base, and the chunks it segmented last time are then not cut again.
@lru_cache(maxsize=65536)
def _segment(chunk: str) -> tuple[str, ...]:
    """A chunk's words, stop words dropped (the chunk's whole result is cached, filtering included)."""
    if CODE_TOKEN.fullmatch(chunk):
        return (chunk,)
    words = [w for w in (word.strip() for word in jieba.lcut(chunk, HMM=True)) if w and w not in STOP_WORDS]
    return tuple(_without_numbered_places(words))


def _without_numbered_places(words: list[str]) -> list[str]:
    """``words`` without a numbered bed, floor, room or hour ("3" "床", "5楼"); a number alone stays ("报12" is
    Err 12, "3000转" a speed)."""
    out = []
    for i, w in enumerate(words):
        if _NUMBERED_PLACE_OR_TIME.fullmatch(w):
            continue
        if _NUMBER.fullmatch(w) and i + 1 < len(words) and _PLACE_OR_TIME.fullmatch(words[i + 1]):
            continue
        if _PLACE_OR_TIME.fullmatch(w) and i and _NUMBER.fullmatch(words[i - 1]):
            continue
        out.append(w)
    return out


def tokens_of_normalised(norm: str) -> list[str]:
    """Tokens of text already through ``normalise`` (the index folds once and reuses the string)."""
    _ensure_jieba()
    out: list[str] = []
    for chunk in norm[:MAX_TOKENISED].split(" "):
        if chunk:
            out.extend(_segment(chunk))
    return out


@lru_cache(maxsize=8192)
def general_rarity(word: str) -> float:
    """How rare a word is in everyday Chinese, 0 (filler: "小时", "里面") .. 1 (rare: "转子", "体温枪"), from
    jieba's general-language word frequencies. A question word the knowledge base never uses weighs by this: a
    filler must not dilute the match, a rare word the base lacks is a sign the question is about something else."""
    _ensure_jieba()
    if word in _DOMAIN_WORDS:
        return 1.0  # its frequency in jieba is ours, not the language's: a domain word is a rare word
    freq = jieba.dt.FREQ.get(word, 0)
    surprisal = math.log(jieba.dt.total / (freq + 1))
    return min(1.0, max(0.05, (surprisal - _COMMON_SURPRISAL) / (_RARE_SURPRISAL - _COMMON_SURPRISAL)))


_COMMON_SURPRISAL = 7.5  # about "不能", "起来": no information about a fault
_RARE_SURPRISAL = 12.5  # about "转子", "带子": as informative as a domain word


def tokens(text: str) -> list[str]:
    """Words of a question: normalised, segmented with the domain dictionary, stop words dropped."""
    return tokens_of_normalised(normalise(text))


def bigrams(norm: str) -> set[str]:
    """Character bigrams within each word chunk of normalised text: robust to words jieba has never seen."""
    out: set[str] = set()
    for chunk in norm[:MAX_TOKENISED].split(" "):
        if CODE_TOKEN.fullmatch(chunk):
            out.add(chunk)
            continue
        out.update(map(str.__add__, chunk, chunk[1:]))  # each character and the next: no slicing per pair
    return out

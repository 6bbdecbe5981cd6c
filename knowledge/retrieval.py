"""The robot's retrieval: which knowledge-base entry answers a question, and how sure that is.

Pure Python over ``KBEntry`` values (no database): the caller builds an ``Index`` from the active entries and
rebuilds it when the knowledge base changes.

Search, per question:
1. fold and segment it (``knowledge.text``);
2. candidates from an inverted index — words (jieba + domain dictionary) and character bigrams, each weighted by
   its IDF — so only entries sharing something with the question are scored;
3. each candidate scored over its question and variants: IDF-weighted word overlap (what carries lay wording),
   bigram overlap, and rapidfuzz (token-set on words, plain ratio on characters); plus how much of the question
   the entry covers across all its texts;
   A question word the base never uses weighs by its rarity in everyday Chinese (``text.general_rarity``): fillers
   cost nothing, a rare unknown word ("转子", "中央站") lowers every entry's coverage. An error code the question
   quotes and an entry lacks ranks that entry down (E-77 is not E-05), and so does a kind of question none of the
   entry's wordings asks (a price, a schedule, supplies, configuration, material, assembly, export, a part's
   lifespan, a normal value, upkeep, an upgrade: ``_ASKS``);
   a clinical question ranks every entry down; another device named ranks its entries down, and a question that
   names none is read with the name of the device just scanned ("报警了" → "呼吸机报警了") or of the one device it
   describes ("给病人打气的机器" → the ventilator);
4. a calibrated confidence: a logistic mapping from (score, margin to the next entry, coverage, content, anchored —
   the question names the entry's device or a word only that device's entries use —, same error code, support —
   the entry's second-best wording, high when several of its texts are close to the question) fitted on the
   calibration split of ``tests/data/kb_queries.jsonl`` (``bench/kb_eval.py --fit`` writes
   ``data/calibration.json``), i.e. the estimated probability that this entry is the right one.

What to do with the matches is ``decide``'s (the robot's rule, which the bench applies too): decline below
``RELEVANT_AT``; two entries of different devices within ``CLARIFY_MARGIN`` of each other, no device known → ask
which device; below ``ANSWER_AT`` → relevant but unsure, ask back; a question saying too little besides the device
(``VAGUE_BELOW``), or entries of one device confident and within ``SAME_DEVICE_MARGIN`` → too vague for one entry,
ask which problem; otherwise answer.
"""

from __future__ import annotations

import gc
import json
import math
import re
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
from rapidfuzz import fuzz, process

from knowledge.text import CODE_TOKEN, bigrams, general_rarity, normalise, tokens_of_normalised

CALIBRATION = Path(__file__).parent / "data" / "calibration.json"

ANSWER_AT = 0.60  # confidence at which the robot answers (chosen by 5-fold CV on the calibration split: 0.7 → 0.6
# answers about 1.5 points more covered questions at once for 0.2 points more wrong answers, 0.3 fewer declines)
RELEVANT_AT = 0.55  # below this nothing is close enough: decline (say what the robot can do; chosen by CV)
CLARIFY_MARGIN = 0.15  # top two of different devices closer than this (no device known) → ask which device
# Entries of one device both confident and closer than this: the question is too vague to tell ("呼吸机报警了"),
# ask which problem it is (at most CHOICES of them) rather than pick one.
SAME_DEVICE_MARGIN = 0.05
# ... and their raw scores this close too: two confidences near 1 are tied whatever the evidence ("呼吸机一直报漏气"
# scores 0.93 on vent-01's leak and 0.62 on vent-05's gas supply, both calibrated above 0.97).
SAME_SCORE_MARGIN = 0.1  # chosen by 5-fold CV on the calibration split (0.05 the same; 0.2 and none worse)
# A question whose words besides the device's name weigh less than one word used by a fifth of the entries
# (IDF ≈ ln 5) is too vague for one entry's answer, however well a short wording of it matches: list that device's
# relevant entries, or ask back. Every labelled covered question of the calibration split weighs more than 2.1.
VAGUE_BELOW = 1.8
CHOICES = 3
CONSIDERED = 1 + CHOICES  # matches the robot asks ``Index.search`` for before ``decide``
DEVICE_BOOST = 0.06  # score added to entries of the device just scanned: breaks ties, never excludes others
# A question that names no device is about the device just scanned: it is read with that device's name (other
# devices' entries ranked down by DEVICE_MISMATCH), and that device's entries weigh double among the candidates.
SCANNED_CANDIDATE_FACTOR = 2.0

CANDIDATES = 16  # entries scored in full after the inverted-index pass
_COMMON = 0.06  # a term in more than this share of entries is too common to propose candidates by itself
_UNKNOWN_WEIGHT = 0.55  # weight of a question word the knowledge base never uses, relative to the rarest word
_BIGRAM_WEIGHT = 0.35  # bigrams only help find candidates; words decide

DEVICE_LABELS = {
    "ventilator": "呼吸机", "monitor": "监护仪", "infusion_pump": "输液泵", "syringe_pump": "注射泵",
    "centrifuge": "离心机", "biochemistry_analyser": "生化分析仪", "blood_gas_analyser": "血气分析仪",
    "defibrillator": "除颤仪", "autoclave": "高压灭菌器", "disinfection_cabinet": "消毒柜",
    "anaesthesia_machine": "麻醉机", "immunoassay_analyser": "免疫分析仪", "haematology_analyser": "血细胞分析仪",
    "ultrasound": "超声诊断仪", "ecg": "心电图机", "endoscope": "内窥镜",
}


# Names people use for a device in a question → its type code. Types without entries are here on purpose: a
# question about a B超 must not be answered from a 监护仪 entry.
_DEVICE_NAMES = {
    "呼吸机": "ventilator", "监护仪": "monitor", "输液泵": "infusion_pump", "注射泵": "syringe_pump",
    "离心": "centrifuge", "生化": "biochemistry_analyser", "血气": "blood_gas_analyser", "除颤": "defibrillator",
    "灭菌器": "autoclave", "消毒柜": "disinfection_cabinet", "麻醉机": "anaesthesia_machine",
    "心电图机": "ecg", "aed": "defibrillator", "b超": "ultrasound", "超声": "ultrasound", "ct": "ct", "内镜": "endoscope",
    "内窥镜": "endoscope", "血糖仪": "glucose_meter", "制氧机": "oxygen_concentrator", "雾化器": "nebuliser",
    "体重秤": "scale", "轮椅": "wheelchair", "病床": "bed", "打印机": "printer", "电脑": "computer",
    "空调": "air_conditioner", "电梯": "lift",
    # Other equipment of a hospital that the shipped knowledge base does not cover.
    "注射泵": "syringe_pump", "镇痛泵": "analgesia_pump", "营养泵": "feeding_pump", "血压计": "bp_meter",
    "体温枪": "thermometer", "额温枪": "thermometer", "耳温枪": "thermometer", "吸引器": "suction",
    "吸痰器": "suction", "胃镜": "endoscope", "肠镜": "endoscope", "冰箱": "fridge", "无影灯": "surgical_light",
    "手术灯": "surgical_light", "手术床": "surgical_table", "电刀": "electrosurgical_unit", "透析机": "dialysis",
    "血球仪": "haematology_analyser", "血细胞分析仪": "haematology_analyser", "尿液分析仪": "urine_analyser",
    "凝血仪": "coagulation_analyser", "培养箱": "incubator", "生物安全柜": "biosafety_cabinet",
    "清洗机": "washer", "核磁": "mri", "x光机": "xray", "空气消毒机": "air_disinfector", "空气净化器": "air_purifier",
}
# Latin names (ct) only as a word of their own: "ct" inside "connect" names no device.
_DEVICE_NAME_RE = re.compile("|".join(
    (rf"(?<![a-z]){re.escape(n)}(?![a-z])" if n.isascii() else re.escape(n))
    for n in sorted(_DEVICE_NAMES, key=len, reverse=True)))
# Clinical decisions are never the robot's: such a question must not borrow a device entry's answer. A patient's
# symptom, a drug's dose, a setting chosen for a patient, what a value means for a patient, whether to call the
# doctor — but not a reading the device gets wrong ("潮气量设500 监测才300", "推肝素 显示堵塞", "探头要不要换").
_CLINICAL = re.compile(
    # symptoms and conditions
    # (not "病人发烧了监护仪体温才36度", "里面不发热", "味道冲得头晕": what the device shows or does)
    r"(?:发烧|(?<!不)发热(?!丝|管|板|盘)|高烧|高热|退烧|胸闷|胸痛|心慌|(?<!得)(?<!了)头晕|抽搐|惊厥|昏迷|意识不清"
    r"|烦躁|休克|缺氧|心梗|肾衰|脓毒症|血栓|糖尿病)(?!.{0,12}?(?:显示|才|却|测出|读数|探头|监护仪))"
    r"|(?:心率|心跳|血压|血糖|血钾|血钠)(?:太|很|偏|有点)?(?:快|慢|高|低)(?!报警|限|压)|低钾|高钾|危急值(?!.{0,6}(?:发送|传|收不到))"
    # drugs and doses, treatment and care
    r"|吃什么药|用什么药|吃啥药|吃药|用药|停药|(?<!试)剂量|怎么配(?!平)|多少单位|多少滴|多少焦|泵速多少"
    r"|(?:速度|泵速)给多少|多少速度|补钾|补钠|推糖|输血|扩容|镇静|抗凝|复律|复温|撤机|约束|换药|敷料(?!包)|护理要点|照蓝光|隔离"
    r"|诊断|(?<!治疗盘)治疗(?!盘|车)|(?:需要|该|可以)插管|插管指征|吸氧|(?:要|该)吸痰|吸痰负压"
    # a value or setting for a patient: 设多少, 给多少, PEEP 多少合适, 88 正常吗, 严重吗, 要紧不, 说明啥
    r"|(?:设|给|补)多少|多少合适|(?:什么|哪个)模式|还是(?:ac|simv|psv|cpap|bipap)"
    r"|\d[^ ]{0,3}?(?:正常吗|正常不|严重吗|要紧)|严重吗|要紧不|要紧吗|说明啥|说明什么|是什么情况"
    # whether to act on the patient: 要不要叫医生, 要输血吗, 要上呼吸机吗, 需要处理吗
    r"|(?:要不要|需不需要|该不该)(?:叫|找|报告|通知)?医生|报告医生|叫医生"
    r"|要不要(?:插|用|吃|打|上|加|减|推|补|给|吸)|要(?:吃|推|补|输|处理|扩容|上呼吸机|上机)[^ ]{0,4}?吗|需要处理吗"
    r"|能不能(?:继续|撤|推|同步)")
# What kind of thing a question asks, where a fault entry never answers it unless one of its wordings asks it too:
# a price, a schedule, supplies, configuration, material, assembly, export, a part's lifespan, a normal value, upkeep,
# an upgrade. Each is (the question's pattern, the pattern a wording of an entry that deals with it matches):
# "离心机多久保养一次" is not cent-01's imbalance, "呼吸机湿化罐里加什么水" not vent-07's heater.
_NORMAL_VALUE = r"多少算|算(?:正常|合格)|一般(?:设|是)?(?:几|多少)|设几度|是多少度|标准是多少|正常值|正常范围"
_ASKS = {
    "price": (r"多少钱|价格|报价|贵不贵|费用|收费", r"多少钱|价格|费用|收费"),
    "schedule": (r"多久[^ ]{0,5}?一次|多长时间[^ ]{0,5}?一次|几(?:天|周|个月|年)[^ ]{0,3}?一次|周期|定期|频率|每隔多久",
                 r"多久[^ ]{0,5}?一次|多长时间[^ ]{0,5}?一次|几(?:天|周|个月|年)[^ ]{0,3}?一次|周期|定期|频率|每隔"),
    "supply": (r"哪里买|在哪买|哪儿买|去哪买|怎么买|采购|订购|申领|在哪领|哪里领|哪家供货",
               r"买|采购|订购|申领|领取|领用|供货"),
    "setting": (r"怎么设置|如何设置|怎么设定|在哪设置|在哪里设置|设置在哪|怎么切换|怎么调成|怎么改成|怎么调到"
                r"|在哪(?:里)?(?:调|改|设|选)|菜单在哪|(?:能|可以)(?:调|改|设)吗|能不能(?:调|改|设)|(?:能|可以)设成|怎么选",
                r"设置|设定|怎么设|怎么调|怎么改|调节|调整|切换"),
    "material": (r"加什么|用什么(?!药)|放什么|换什么|哪种(?:水|液|纸|消毒|清洁)",
                 r"加什么|用什么|放什么|换什么|什么(?:水|液|纸|包|擦)|哪种"),
    "assembly": (r"怎么拆|拆下来|拆开|怎么安装|怎么装上|怎么接入|怎么连接|怎么联网", r"拆|安装|装上|接入|连接|联网"),
    "export": (r"导出|备份|拷出来|拷贝", r"导出|备份|拷出|拷贝"),
    "lifespan": (r"能用多久|用多久|多久(?:要|得|需要)?换|寿命|用了好多年", r"能用多久|用多久|多久(?:要|得|需要)?换|寿命"),
    "norm": (_NORMAL_VALUE, _NORMAL_VALUE),
    "upkeep": (r"怎么保存|放冰箱|冷藏还是|常温保存|保存多久|怎么(?:丢|扔)|医废|医疗垃圾|怎么搬|搬到|搬的时候|登记表|签字"
               r"|年检|存档|怎么消毒|怎么清洗|怎么清洁|怎么保养|保养",
               r"保存|冰箱|冷藏|常温|丢|扔|医废|医疗垃圾|搬|登记|签字|年检|存档|消毒|清洗|清洁|保养|擦"),
    "upgrade": (r"升级|刷机|更新(?:软件|系统|版本|程序)|版本号", r"升级|刷机|更新|版本"),
}
_ASKED = {name: re.compile(q) for name, (q, _) in _ASKS.items()}
_DEALT_WITH = {name: re.compile(e) for name, (_, e) in _ASKS.items()}
INTENT_MISMATCH = 0.4  # score kept by an entry none of whose wordings deals with what kind of thing the question asks
DEVICE_MISMATCH = 0.35  # score kept by entries of another device than the one(s) the question names
CLINICAL_FACTOR = 0.5  # score kept by every entry for a clinical-decision question
CLINICAL_ANSWER_AT = 0.9  # a clinical question is answered only above this (a device fault told in clinical words)
NO_CONTENT_FACTOR = 0.5  # score kept by an entry sharing nothing with the question but a device name
CODE_MISMATCH = 0.4  # score kept by an entry lacking the error code the question quotes (E-77 is not E-05)


def is_clinical(text: str) -> bool:
    """A question about a patient's care (symptom, drug, dose, a setting or value for a patient), not the device."""
    return bool(_CLINICAL.search(normalise(text)))


# An examination, not the machine: "病人推出去做B超" says where the patient went ("做胃镜的主机" is the machine).
_EXAMS = frozenset({"b超", "超声", "ct", "核磁", "胃镜", "肠镜", "x光机"})
_HAVING_AN_EXAM = re.compile(r"(?:做|拍|查|去)$")
_THE_MACHINE_AFTER = re.compile(r"(?:的(?:那个|那台|这个|这台)?[^ ]{0,3}?)?(?:机|主机|设备|仪器|探头|屏)|室|科")


def mentioned_devices(norm: str) -> set[str]:
    """Type codes of the devices a normalised question names (``"离心机盖子" → {"centrifuge"}``)."""
    return {_DEVICE_NAMES[m.group(0)] for m in _DEVICE_NAME_RE.finditer(norm)
            if not (m.group(0) in _EXAMS and _HAVING_AN_EXAM.search(norm, 0, m.start())
                    and not _THE_MACHINE_AFTER.match(norm, m.end()))}


# A device described instead of named ("给病人打气的那个机器", "甩管子的机子", "供应室那口大蒸锅", "放臭氧的柜子"):
# what it does, shows or holds, said of a machine. Only when one device's description fits, and none of other
# equipment's ("给腿打气防血栓的", "推针管的小泵", "测肺功能吹气的" are not a ventilator or an infusion pump).
_A_MACHINE = re.compile(r"机器|机子|仪器|设备|玩意|东西|家伙|盒|箱|柜|屏|显示器|锅|罐|机|仪")
_DESCRIBED = {device: re.compile(cues) for device, cues in {
    "ventilator": r"打气|送气|喘气|吹气|鼓肺|给气|吸气吐气|帮[^ ]{0,3}呼吸|通气量|螺纹管|气管插管|插着管|插管病人|气切"
                  r"|接到喉咙|肺里|潮气量|呼气阀|peep",
    "monitor": r"(?:看|测|量|显示|监测|监护)[^ ]{0,6}?(?:心跳|心率|心电|血氧|血压|生命体征|脉搏|氧饱和)|波形的|看波形"
               r"|好几条波形|生命体征|夹手指|手指夹|贴胸口|导联",
    "infusion_pump": r"输液架|点滴杆|输液杆|吊瓶|滴速|控速|控制[^ ]{0,4}?(?:速|快慢)|打点滴|推药水|输药水|药水|毫升每小时"
                     r"|(?:控制|管)输液|输液(?:用)?的(?:那个|那台|这个|这台)?(?:小)?(?:机器|机子|设备|仪器|盒子)"
                     r"|预置量|蠕动|滴斗|挂在杆|杆子上|杆上",
    "centrifuge": r"甩|转血|分离血|分血|分层|转管|转样本|转尿|配平|吊篮|转头|转子|上清|转筒|高速转|一圈转|嗡嗡转",
    "biochemistry_analyser": r"肝功|肾功|血脂|转氨酶|肌酐|尿素氮|比色杯|吸光度|试剂盘|心肌酶|胆红素|总蛋白|酶学|甘油三酯"
                             r"|(?<![a-z])alt(?![a-z])|尿酸|电解质",
    "blood_gas_analyser": r"动脉血|氧分压|二氧化碳分压|酸碱|(?<![a-z])ph(?![a-z])|碳酸氢根|碱剩余|氧合"
                          r"|(?<![a-z])p(?:o2|co2)(?![a-z])|酸中毒|碱中毒|定标气",
    "defibrillator": r"电一下|电击|电病人|电[^ ]{0,2}心脏|电回来|放电|电极板|两个[^ ]{0,3}板子|板子一压|急救盒|急救电"
                     r"|心脏骤停|心跳停|骤停|复律|起搏|黄盒子|救心",
    "autoclave": r"蒸(?!馏|发)|高压锅|蒸汽|134度|生物监测|(?<![a-z])bd测试|器械包|手术包|锅炉",
    "disinfection_cabinet": r"碗柜|臭氧|烘碗|餐具|奶瓶|碗筷|餐盘|烘干杀菌|紫外|杀菌[^ ]{0,3}柜|烘[^ ]{0,3}柜",
}.items()}
# Cues that also describe other equipment: a pump pushing a syringe, a cuff against thrombosis, a nebuliser.
_LOOKS_LIKE_OTHER = {device: re.compile(cues) for device, cues in {
    "ventilator": r"血栓|眼压|肺功能|雾化|腿|袖带|压脉带|血压", "infusion_pump": r"针管|针筒|注射器|营养|鼻饲",
    "monitor": r"胎心|保温箱|暖箱|心电图",
}.items()}


def described_device(norm: str) -> str | None:
    """The one device type a normalised question describes without naming it, or None."""
    if not _A_MACHINE.search(norm):
        return None
    found = [device for device, cues in _DESCRIBED.items() if cues.search(norm)
             and not (device in _LOOKS_LIKE_OTHER and _LOOKS_LIKE_OTHER[device].search(norm))]
    return found[0] if len(found) == 1 else None


def device_label(device_type: str) -> str:
    """What people call a device type ("ventilator" → "呼吸机"); an unknown type as written."""
    return DEVICE_LABELS.get(device_type, device_type)


@dataclass(frozen=True)
class KBEntry:
    id: str
    device_type: str
    question: str
    variants: tuple[str, ...]
    answer: str
    tier: str
    docs: tuple[dict, ...] = ()
    videos: tuple[dict, ...] = ()


@dataclass(frozen=True)
class Match:
    entry: KBEntry
    confidence: float  # calibrated 0..1: the estimated probability that this is the right entry
    # What the question says besides naming a device, as summed IDF (the same for every match of a question):
    # below VAGUE_BELOW it says no more than "报警" or "坏了", whatever one entry's wording happens to share.
    information: float = math.inf
    score: float = 0.0  # the raw score calibration maps (``Scored.score``): confidence saturates near 1, this does not


@dataclass(frozen=True)
class Decision:
    """What the robot should do with a question's matches (``decide``): ``decline`` (nothing relevant),
    ``which_device`` (two devices nearly tied, none known), ``which_problem`` (too vague for one entry: one device's
    entries confidently tied, or too little said besides the device), ``unsure`` (relevant, below the answer bar, or
    vague with one relevant entry: ask back), ``answer``. ``options`` are the matches to offer or use,
    best first."""

    kind: str
    options: tuple[Match, ...] = ()


def decide(matches: list[Match], *, device_known: bool, clinical: bool = False) -> Decision:
    """The robot's rule over ``Index.search``'s matches; the bench applies the same function. A clinical question
    (``is_clinical``) is answered only from a near-certain match (a device fault in clinical words), never asked back
    about or listed: "病人发烧39度怎么处理" is not "监护仪体温读数异常"."""
    decision = _decide(matches, device_known=device_known)
    if clinical and (decision.kind != "answer" or decision.options[0].confidence < CLINICAL_ANSWER_AT):
        return Decision("decline")
    return decision


def _decide(matches: list[Match], *, device_known: bool) -> Decision:
    if not matches or matches[0].confidence < RELEVANT_AT:
        return Decision("decline")
    best = matches[0]
    if not device_known and len(matches) > 1:
        second = matches[1]
        if (second.entry.device_type != best.entry.device_type
                and best.confidence - second.confidence < CLARIFY_MARGIN
                and second.confidence >= RELEVANT_AT):
            return Decision("which_device", (best, second))
    if best.confidence < ANSWER_AT:
        return Decision("unsure", (best,))
    if best.information < VAGUE_BELOW:
        relevant = [m for m in matches if m.entry.device_type == best.entry.device_type
                    and m.confidence >= RELEVANT_AT][:CHOICES]
        return Decision("which_problem", tuple(relevant)) if len(relevant) > 1 else Decision("unsure", (best,))
    tied = [m for m in matches[1:] if m.entry.device_type == best.entry.device_type
            and m.confidence >= ANSWER_AT and best.confidence - m.confidence < SAME_DEVICE_MARGIN
            and best.score - m.score < SAME_SCORE_MARGIN]
    if tied:
        return Decision("which_problem", (best, *tied)[:CHOICES])
    return Decision("answer", (best,))


@dataclass(frozen=True)
class Scored:
    """Raw evidence for one candidate (what calibration maps to a confidence)."""

    entry: int
    score: float  # 0..~1.1
    coverage: float  # share of the question's weight found anywhere in the entry
    content: float = 0.0  # the same over the question's words other than device names: what the fault is
    anchored: float = 0.0  # 1 when the question names the entry's device or a word only that device's entries use
    code: float = 0.0  # 1 when the question quotes an error code and the entry has the same code
    support: float = 0.0  # the entry's second-best text: several of its wordings close to the question
    information: float = math.inf  # the question's content weight (``Match.information``)


def normalise_for_check(text: str) -> str:
    """The folded question, ``""`` when nothing readable is left (only emoji, punctuation, control characters) or
    nothing but numbers: a bare "3" is a reply to a list that is gone, not a question to answer from an entry."""
    norm = normalise(text)
    return norm if any(ch.isalpha() for ch in norm) else ""


# --- person requests and chit-chat ------------------------------------------------------------------------------

# Who a person request asks for. A bare 人 only right after the verb (找人, 来个人), never inside 病人 or 家属.
_ENGINEER = r"[工公攻共][程成城](?:师|狮)"  # 工程师 as typed: 工程狮, 攻城狮, 公成师, 共程师
_NOUN = (rf"(?:真人|活人|{_ENGINEER}|师傅|师父|老师|修(?:机器|设备|机子)?的|修理(?:工|的人|的)|维护的人"
         r"|维修(?:的|人员|工|科|部|组|的人)(?!记录|手册|资料|保养|周期|方法|步骤|说明|视频|教程|费|单号|流程|期)"
         r"|(?<!要)(?<!需)维修(?!记录|手册|资料|保养|周期|方法|步骤|说明|视频|教程|费|单号|流程|期|模式|人员在)"
         r"|售后|客服|厂家|厂商|厂方|代理商|驻场|值班的|设备科|设备处|医工科|医工处|临床工程|工程部|技术员|技术人员"
         r"|负责人|领导|主管|经理|科长|主任|懂[^ ]{0,6}?的|会修的|内行|专业的|(?:你们|管设备|懂设备)的人)")
# Someone who comes in person (not 设备科 or 厂家: "设备科年度巡检什么时候来" asks about a schedule).
_SOMEONE = rf"(?:{_ENGINEER}|师傅|师父|维修(?:的|人员|工)|修(?:机器|设备|机子)?的)"
# Not declined ("不用派人了", "不需要人工") and not someone else's doing ("病人一直喊人").
_NOT = (r"(?<!不用)(?<!不要)(?<!不必)(?<!无需)(?<!不需要)(?<!不需)(?<!不想)(?<!别)(?<!先不)(?<!不)"
        r"(?<!病人)(?<!患者)(?<!家属)(?<!病人一直)(?<!患者一直)(?<!家属一直)")
_NOT_TURNED = r"(?<!不用转)(?<!不要转)(?<!不必转)(?<!无需转)(?<!不需要转)(?<!别转)(?<!不转)"
_VERB = r"(?:找|叫|派|喊|请|要|联系|通知|安排|约|让|搵|揾|转接|转给|转到|协调|催|麻烦你们)"
# "提示“请联系工程师”是什么意思", "说明书里写请联系授权维修人员 这是指什么情况" quote the device or the manual.
_MEANING = r"(?![^，。？！]{0,6}?(?:是什么意思|什么意思|啥意思|是啥|是指|指什么|什么情况))"
_PERSON = re.compile(
    # the hand-off itself: 转人工, 人工客服, 我要人工 (not 人工鼻, 人工气道, 人工定标, 人工叹息 …), typed in pinyin too
    rf"{_NOT}(?:转|赚|专)(?:人|仁)(?:工|公)|{_NOT}{_NOT_TURNED}人工(?!鼻|气道|呼吸|智能|通气|皮肤|心肺|晶体|关节|耳蜗|肝|肾|瓣膜"
    r"|血管|定标|校准|叹息|复苏|膨肺|模式|输入|录入|计数|操作|那边|已经)|人公|(?<![a-z])(?:zhuan ?)?ren ?gong(?![a-z])"
    # in English: human please, need engineer, send a technician, can someone call me, call me back
    r"|(?<![a-z])(?:human|real person|engineer|technician|someone|somebody)(?![a-z])[^，。？！]{0,12}?"
    r"(?:please|pls|asap|call)|(?<![a-z])(?:need|send|want|get)(?: an?| the| me)?"
    r" (?:human|engineer|technician|someone|somebody|person)|call me|call back"
    r"|(?<![a-z])(?:someone|somebody|anyone|engineer|technician) (?:come|to come|visit)"
    r"|(?<![a-z])pai ?(?:ge ?)?ren(?![a-z])"
    # asking for someone: a request verb, a few words, a person (找你们售后, 叫个攻城狮来, 派个修机器的, 搵个人)
    rf"|{_NOT}{_VERB}[^，。？！,.?! 谢]{{0,6}}?{_NOUN}{_MEANING}|{_NOT}(?:{_VERB}|来|换)(?:个|一个|一位|位|些)?人(?!工)"
    rf"|(?:派|来|找|叫)不(?:派|来|找|叫)(?:个)?人|{_NOT}转(?:给|到|接)?{_NOUN}"
    # who will do it: 谁能帮我弄一下, 你们哪个来弄一下, 谁来管管, 到底管不管
    r"|(?:谁|哪个|哪位)(?:能|可以|来|过来)[^，。？！ ]{0,4}?(?:弄|管|修|看|处理|帮)|管不管|有没有人管"
    # the person, then come / call / are you there: 工程师快来, 维修的过来, 修机器的师傅在不在, 客服在哪
    rf"|{_NOUN}的?(?:快|赶紧|马上|尽快|现在|今天)?(?:能|能不能|可以|可不可以)?(?:来|过来|上来|下来|上门|联系我|给我打电话"
    r"|回电|在不在|在吗|在哪)(?!巡检|培训|讲课|检查|过了|过)"
    rf"|有没有[^，。？！ ]{{0,3}}?{_NOUN}"
    # when they come: 工程师几点到, 师傅大概多久能到, 昨天报修的怎么还没人来, 人呢
    rf"|{_SOMEONE}[^，。？！ ]{{0,6}}?(?:几点|什么时候|啥时候|多久|多长时间)[^，。？！ ]{{0,3}}?(?:到|来)"
    r"|(?:还|怎么|咋)没(?:有)?人(?:来|到|管|理|回)|(?<!病)(?<!家属)人呢|人(?:啥|什么)时候(?:到|来)|(?:怎么|咋)还没(?:到|来)"
    # calls: 给我回个电话, 打我电话, 电话沟通, 留个电话, 加工程师微信, 打哪个电话, 维修电话多少
    r"|(?:联系|打电话给|回电话给|打给|打)我|给我(?:回|打)(?:个|一个)?电话|打(?:个|一个)?电话给我|(?:要|想|得|该)打电话给"
    r"|打电话给(?:你们|谁|哪)|回(?:个|一个)?电话|请回电|电话(?:沟通|联系|说|讲)|留(?:个|一个)?电话|加[^，。？！ ]{0,6}?微信"
    rf"|电话多少|热线|打哪个电话|(?:{_NOUN}|报修|值班)[^，。？！]{{0,4}}?(?:电话|联系方式|手机|号码|微信)"
    r"(?![^ ]{0,3}(?:存了|有了|知道了))"
    # someone to come, on site or remotely: 过来看看, 上门, 来修, 现场支持, 远程支持, 视频指导
    r"|(?:过来|来|嚟)(?:一趟|看看|看下|看一下|瞧瞧|瞅瞅|瞅一眼|睇下|睇睇|修|保养|维护|检修|处理|弄)|上门(?!服务?(?:收费|费|要钱))|来修"
    r"|(?:能不能|可不可以|可以|能)[^，。？！ 改调换转弄拿搬变]{0,8}?过来|(?:约|定)(?:个)?时间(?:过来|来|上门)"
    r"|(?:现场|远程|上门)(?:支持|服务|指导|处理|协助)(?!收费|费|要钱|多少钱)|视频(?:指导|连线|看看)"
    # reporting a repair or opening a ticket (not one reported before: 上次报修的单子; not the warranty: 保修期;
    # not a question about it: 报修之前要做什么)
    r"|(?<!上次)(?<!已经)(?<!昨天)(?<!之前)(?<!先不)(?<!不用)(?<!不)(?<!情况下需要)(?<!时候需要)(?<!需不需要)"
    r"(?:(?:报|抱|暴)(?:个|一下)?修|报休|(?:登记|等级)(?:个|一下)?维修"
    r"|挂(?:个)?维修|维修单|维修申请|申请维修)(?!过|的单|单号|记录|流程|之前|前|需要|要先|的话)"
    r"|(?:要|帮我|我想|申请)保修|派(?:个|一个)?单(?!上|的|编号|号|在哪)|(?:开|提|建|下|派)(?:个|一个)?(?:工单|单子)(?!上|的|编号|号|在哪)"
    r"|开个单|我要维修|帮(?:我|忙)?(?:登记|等级|催|跟进|安排|派)|(?:请|麻烦)?跟进一下|请跟进|帮忙跟进|请求支援|需要支援"
    r"|(?:尽快|赶紧|马上|快点)处理|帮(?:我|忙)处理一下(?:这个)?故障"
    # nobody there, or a person to talk to: 有人吗, 有没有真的人, 咋没人管, 我要跟人说话
    r"|有人吗|有人没|有人不|有没有(?:真的|真)?人|(?:没|莫得|冇)人(?:管|理|回)|(?:跟|和|同)(?:真|活)?人(?:说|讲|聊|对话|沟通)|(?<!是)真人"
    # not the robot, or a complaint: 机器人听不懂, 不要机器人, 答非所问, 投诉你们, 你们主管是谁
    r"|(?:不要|别用|不想跟)机器(?:人)?|机器(?:人)?(?:说不清|讲不清|没用|听不懂)|答非所问|活人|接人(?!工)"
    r"|投诉(?:你们|客服|工程师|维修|设备科|机器人)|(?:负责人|领导|主管|经理)是谁")

_CHITCHAT = re.compile(
    r"^(?:你好|您好|嗨|哈喽|hello|hi|hey|在吗|在不在|谢谢|多谢|感谢|辛苦|再见|拜拜|bye|早上好|早安|中午好|下午好|晚上好|晚安"
    # laughter and "嗯/哦" only as words of their own: "哈美顿 C1 …" is a ventilator's brand, not a laugh
    r"|(?:哈|呵|嘿|嗯|哦)+(?=$|[^\u4e00-\u9fff]|好|收到|谢|对|是)|好的|好吧|ok|收到|吃饭了吗|吃了吗)"
    r"|天气|下雨|下雪|气温|笑话|段子|聊天|聊聊|无聊|你是谁|你叫什么|你是机器人|你是真人|是不是真人|你几岁|你多大|你会什么|你能干什么|你喜欢")

_DEVICE_WORDS = re.compile("|".join(sorted(
    {re.escape(n) for n in (*DEVICE_LABELS.values(), *_DEVICE_NAMES)}
    | {"报警", "故障", "坏", "设备", r"e-\d", r"err-\d"}, key=len, reverse=True)))


def wants_person(text: str) -> bool:
    """An explicit request for a person: 转人工, 人工客服, 找人, 报修, 叫/派工程师, 上门, … (typos included)."""
    return bool(_PERSON.search(normalise(text)))


_TRYING_OUT = frozenset({"测试", "测试一下", "试试", "试一下", "试试看", "test", "testing"})


def is_chitchat(text: str) -> bool:
    """Greetings, thanks, jokes, weather, questions about the robot, "测试一下" — nothing about a device."""
    norm = normalise(text)
    if not norm or _DEVICE_WORDS.search(norm):
        return False
    return norm in _TRYING_OUT or bool(_CHITCHAT.search(norm))


# --- calibration ------------------------------------------------------------------------------------------------

FEATURES = ("score", "margin", "coverage", "content", "anchored", "code", "support")
_DEFAULT_CALIBRATION = {"weights": [6.0, 1.5, 1.0, 2.0, 1.0, 1.0, 0.0], "bias": -5.0}


def features(best: Scored, other: Scored | None) -> list[float]:
    margin = best.score - (other.score if other else 0.0)
    return [best.score, margin, best.coverage, best.content, best.anchored, best.code, best.support]


def load_calibration(path: Path = CALIBRATION) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if len(data["weights"]) == len(FEATURES):
            return data
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return _DEFAULT_CALIBRATION


def probability(calibration: dict, feats: list[float]) -> float:
    z = calibration["bias"] + sum(w * x for w, x in zip(calibration["weights"], feats))
    z = max(-30.0, min(30.0, z))
    return 1.0 / (1.0 + math.exp(-z))


_DEVICE_TOKENS: frozenset[str] | None = None


def _device_tokens() -> frozenset[str]:
    """Words that only name a device ("呼吸机", "生化"): a question that shares nothing else with an entry has not
    said what is wrong, and a device name alone must not carry an answer."""
    global _DEVICE_TOKENS
    if _DEVICE_TOKENS is None:
        names = {*DEVICE_LABELS.values(), *_DEVICE_NAMES, "冷冻离心机", "生化仪", "血气仪", "灭菌器", "除颤器"}
        split = (tokens_of_normalised(normalise(n)) for n in names)
        _DEVICE_TOKENS = frozenset(t[0] for t in split if len(t) == 1)
    return _DEVICE_TOKENS


# --- the index --------------------------------------------------------------------------------------------------

@contextmanager
def _collector_paused():
    """The cyclic garbage collector off while an index is built: the build makes hundreds of thousands of objects
    and no cycles, and each collection it would trigger walks everything made so far (about a fifth of a
    10,000-entry build's time). Reference counting still frees as usual; the collector is back on afterwards."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


@dataclass(frozen=True)
class _Text:
    chars: str  # normalised, without spaces: for character-level fuzz
    words: str  # tokens joined by spaces: for token-set fuzz
    token_set: frozenset[str]
    weight: float  # summed IDF of token_set
    gram_set: frozenset[str]  # character bigrams: survive segmentation differences ("测不出" / "测不出来")
    gram_weight: float


class Index:
    def __init__(self, entries: list[KBEntry], texts: list[list[_Text]], entry_tokens: list[frozenset[str]],
                 entry_grams: list[frozenset[str]], postings: dict[str, list[int]], idf: dict[str, float], gram_idf: dict[str, float],
                 calibration: dict, device_words: dict[str, str] | None = None) -> None:
        self._gram_idf = gram_idf
        self._device_words = device_words or {}
        self.entries = entries
        self._texts = texts
        self._entry_tokens = entry_tokens
        self._entry_grams = entry_grams
        self._postings = postings
        # A posting list as an array, made at its first use (making them all would cost the build a second):
        # the candidate pass then adds a term's weight to all its entries in one step.
        self._arrays: dict[str, np.ndarray] = {}
        self._idf = idf
        self._unknown = _UNKNOWN_WEIGHT * max(idf.values(), default=1.0)
        self._common = max(8, int(len(entries) * _COMMON))
        self._device_tokens = _device_tokens()
        by_type: dict[str, list[int]] = defaultdict(list)
        for i, entry in enumerate(entries):
            by_type[entry.device_type].append(i)
        self._of_type = {t: np.array(ids, dtype=np.intp) for t, ids in by_type.items()}
        self.calibration = calibration
        self._deals_with: dict[int, frozenset[str]] = {}  # an entry's kinds of question (``_ASKS``), at first need

    def _kinds_dealt_with(self, i: int) -> frozenset[str]:
        found = self._deals_with.get(i)
        if found is None:
            chars = " ".join(t.chars for t in self._texts[i])
            # How to configure something is what the entry is about only if its question asks it: a fault's
            # wordings mention settings as what was tried ("转速设置3000只到1500").
            question = self._texts[i][0].chars
            found = self._deals_with[i] = frozenset(
                n for n, rx in _DEALT_WITH.items() if rx.search(question if n == "setting" else chars))
        return found

    @classmethod
    def build(cls, entries: Iterable[KBEntry], *, calibration: dict | None = None) -> "Index":
        with _collector_paused():
            return cls._build(list(entries), calibration)

    @classmethod
    def _build(cls, listed: list[KBEntry], calibration: dict | None) -> "Index":
        raw_texts: list[list[tuple[str, list[str], frozenset[str]]]] = []
        # Each term is posted once per entry, entries in order: the lists come out sorted and without repeats.
        postings: dict[str, list[int]] = defaultdict(list)
        entry_tokens: list[frozenset[str]] = []
        entry_grams: list[frozenset[str]] = []
        for i, entry in enumerate(listed):
            per_entry = []
            words: set[str] = set()
            all_grams: set[str] = set()
            label = device_label(entry.device_type)
            for text in (entry.question, *entry.variants):
                norm = normalise(text)
                toks = tokens_of_normalised(norm)
                grams = frozenset(bigrams(norm))
                per_entry.append((norm, toks, grams))
                words.update(toks)
                all_grams.update(grams)
            for gram in all_grams:
                postings["\x01" + gram].append(i)
            # The device's own name counts for the entry even where a variant says "it".
            words.update(tokens_of_normalised(normalise(label)))
            for word in words:
                postings[word].append(i)
            entry_tokens.append(frozenset(words))
            entry_grams.append(frozenset(all_grams))
            raw_texts.append(per_entry)
        n = max(1, len(listed))
        idf = {term: math.log((n + 1) / (len(ids) + 0.5)) + 0.1 for term, ids in postings.items()}
        gram_idf = {term[1:]: w for term, w in idf.items() if term.startswith("\x01")}
        texts = []
        for per_entry in raw_texts:
            built = []
            for norm, toks, grams in per_entry:
                token_set = frozenset(toks)  # every word and bigram of the base has its idf: plain lookups
                built.append(_Text(chars=norm.replace(" ", ""), words=" ".join(toks), token_set=token_set,
                                   weight=sum(map(idf.__getitem__, token_set)) or 1.0, gram_set=grams,
                                   gram_weight=sum(map(gram_idf.__getitem__, grams)) or 1.0))
            texts.append(built)
        frozen = dict(postings)
        # Words used by one device type's entries only ("湿化罐", "bd", "样本针"): they say which device is meant
        # as surely as its name.
        device_words: dict[str, str] = {}
        types = [e.device_type for e in listed]
        for term, ids in frozen.items():
            if term.startswith("\x01") or len(term) < 2 and not term.isascii():
                continue
            first = types[ids[0]]
            if all(types[i] == first for i in ids):  # stops at the first other device: cheap for common words
                device_words[term] = first
        return cls(listed, texts, entry_tokens, entry_grams, frozen, idf, gram_idf,
                   calibration if calibration is not None else load_calibration(), device_words)

    def __len__(self) -> int:
        return len(self.entries)

    def _gram_weight(self, gram: str) -> float:
        return self._gram_idf.get(gram, self._unknown)

    def _weight(self, token: str) -> float:
        known = self._idf.get(token)
        if known is not None:
            return known
        # A word the knowledge base never uses: a filler ("小时") weighs next to nothing, a rare word ("转子")
        # almost as much as the rarest word of the base, so an entry that lacks it covers less of the question.
        return self._unknown * general_rarity(token)

    def _posting_array(self, term: str) -> np.ndarray | None:
        """The entries using ``term``, or None when none does or too many do to propose candidates by it."""
        found = self._arrays.get(term)
        if found is None:
            ids = self._postings.get(term)
            if not ids or len(ids) > self._common:
                return None
            found = self._arrays[term] = np.array(ids, dtype=np.intp)
        return found

    def score(self, text: str, *, device_type: str | None = None) -> list[Scored]:
        """Every candidate's raw evidence, best first (calibration and the benches read this)."""
        norm = normalise_for_check(text)
        named = mentioned_devices(norm)
        scanned = bool(device_type and norm and not named)
        if scanned:
            # No device named, one just scanned: "报警了" means "呼吸机报警了", and is searched and weighed as such.
            norm = f"{normalise(device_label(device_type))} {norm}"
            named = {device_type}
        elif norm and not named and (described := described_device(norm)):
            norm = f"{normalise(device_label(described))} {norm}"  # "打气的那个机器" is the ventilator, read so
            named = {described}
        toks = tokens_of_normalised(norm)
        if not toks:
            return []
        qset = set(toks)
        weight_of = {t: self._weight(t) for t in qset}  # looked up once: the candidate loop below is the hot path
        q_weight = sum(weight_of[t] for t in qset)
        content_set = qset - self._device_tokens
        c_weight = sum(weight_of[t] for t in content_set)
        grams = bigrams(norm)
        # What the question says besides naming a device, as bigrams too: robust to segmentation ("装纸"/"怎么装").
        content_grams = bigrams(_DEVICE_NAME_RE.sub(" ", norm))
        content_gram_weight_of = {g: self._gram_weight(g) for g in content_grams}
        cg_weight = sum(content_gram_weight_of[g] for g in content_grams)
        acc = np.zeros(len(self.entries))
        for term in qset:
            ids = self._posting_array(term)
            if ids is not None:
                acc[ids] += self._idf[term]
        for gram in grams:
            ids = self._posting_array("\x01" + gram)
            if ids is not None:
                acc[ids] += _BIGRAM_WEIGHT * self._idf["\x01" + gram]
        if scanned and device_type in self._of_type:
            acc[self._of_type[device_type]] *= SCANNED_CANDIDATE_FACTOR
        touched = np.flatnonzero(acc)
        if not touched.size:
            return []
        # The best-supported entries, ties in entry order (the same on every worker, whatever the hash seed).
        candidates = touched[np.argsort(-acc[touched], kind="stable")[:CANDIDATES]].tolist()
        gram_weight_of = {g: self._gram_weight(g) for g in grams}
        g_weight = sum(gram_weight_of[g] for g in grams) or 1.0
        codes = {t for t in qset if CODE_TOKEN.fullmatch(t)}
        hinted = named | {self._device_words[t] for t in qset if t in self._device_words}
        clinical = bool(_CLINICAL.search(norm))
        asks = frozenset(n for n, rx in _ASKED.items() if rx.search(norm))
        q_chars = norm[:200].replace(" ", "")
        q_words = " ".join(toks)
        weight, gram_weight = weight_of.__getitem__, gram_weight_of.__getitem__
        # rapidfuzz over all the candidates' texts in two calls (the question prepared once for each), in the order
        # the loop below walks them.
        texts = [t for i in candidates for t in self._texts[i]]
        fuzzy = iter((np.maximum(
            process.cdist([q_words], [t.words for t in texts], scorer=fuzz.token_set_ratio, dtype=np.float64)[0],
            process.cdist([q_chars], [t.chars for t in texts], scorer=fuzz.ratio, dtype=np.float64)[0]) / 100.0
        ).tolist())
        out = []
        for i in candidates:
            best_text = second_text = 0.0
            for t in self._texts[i]:
                shared = sum(map(weight, qset & t.token_set))  # map, not a generator: the innermost loop
                q_cov = shared / q_weight
                t_cov = shared / t.weight
                overlap = 2 * q_cov * t_cov / (q_cov + t_cov) if shared else 0.0
                g_shared = sum(map(gram_weight, grams & t.gram_set))
                g_cov = g_shared / g_weight
                gt_cov = g_shared / t.gram_weight
                g_overlap = 2 * g_cov * gt_cov / (g_cov + gt_cov) if g_shared else 0.0
                this = 0.4 * overlap + 0.3 * g_overlap + 0.3 * next(fuzzy)
                if this > best_text:
                    best_text, second_text = this, best_text
                elif this > second_text:
                    second_text = this
            coverage = sum(map(weight, qset & self._entry_tokens[i])) / q_weight
            content = sum(map(weight, content_set & self._entry_tokens[i])) / c_weight if c_weight else 0.0
            if cg_weight:
                content = max(content, sum(map(content_gram_weight_of.__getitem__,
                                               content_grams & self._entry_grams[i])) / cg_weight)
            score = 0.75 * best_text + 0.25 * coverage
            entry_type = self.entries[i].device_type
            if not content:
                score *= NO_CONTENT_FACTOR
            if named and entry_type not in named:
                # Another device's entry does not cover the question, however alike the words.
                score *= DEVICE_MISMATCH
                coverage *= DEVICE_MISMATCH
                content *= DEVICE_MISMATCH
            code = 0.0
            if codes:
                if codes & self._entry_tokens[i]:
                    code = 1.0
                else:
                    # The question quotes a code this entry doesn't know: another fault, whatever else matches.
                    score *= CODE_MISMATCH
                    content *= CODE_MISMATCH
            if asks and asks - self._kinds_dealt_with(i):
                score *= INTENT_MISMATCH
                coverage *= INTENT_MISMATCH
                content *= INTENT_MISMATCH
            if device_type and entry_type == device_type:
                score += DEVICE_BOOST
            if clinical:
                # Whatever its words share with an entry, a clinical question is not what the entry answers.
                score *= CLINICAL_FACTOR
                coverage *= CLINICAL_FACTOR
                content *= CLINICAL_FACTOR
            anchored = 1.0 if entry_type in hinted or entry_type == device_type else 0.0
            out.append(Scored(i, score, coverage, content, anchored, code, second_text, c_weight))
        out.sort(key=lambda s: s.score, reverse=True)
        return out

    def search(self, text: str, *, device_type: str | None = None, limit: int = 5) -> list[Match]:
        """Entries best first, each with its calibrated confidence. ``device_type`` (from a recent scan) is the
        device a question that names none is about: its entries are favoured, others ranked down, none excluded."""
        scored = self.score(text, device_type=device_type)
        matches = []
        for rank, s in enumerate(scored[:max(0, limit)]):
            # The margin is to the best other entry: negative for all but the first.
            if rank == 0:
                other = scored[1] if len(scored) > 1 else None
            else:
                other = scored[0]
            matches.append(Match(self.entries[s.entry], probability(self.calibration, features(s, other)),
                                 s.information, s.score))
        # Confidence weighs coverage as well as score: order by it, so "best first" means most likely first.
        matches.sort(key=lambda m: m.confidence, reverse=True)
        return matches

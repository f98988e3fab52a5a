"""Sentence pools for the espeak corpus: templates x word lists, per language.

Each language has a few slot lists (who, did what, when / where); a sentence is one
entry of each, so a pool has thousands of distinct, grammatical, emotionally neutral
sentences. Sentences are drawn independently of the emotion an utterance is spoken
in: the words carry no emotion, only the prosody does. Short sentences (two slots)
and long ones (three) give durations of about 1.5-5 s at espeak's default rate.

Mandarin is written in Hanzi (espeak-ng's cmn dictionary reads them as pinyin); the
lists avoid characters whose reading depends on context (e.g. 了, 得, 长), which a
dictionary-based reader gets wrong. Finnish and Turkish (the corpus's languages outside
Indo-European and Sino-Tibetan) have the English and Spanish slot sizes, in their own word
order: Turkish is verb-final, so its short sentences keep the first and last slot.
"""
from __future__ import annotations

import numpy as np

__all__ = ["SENTENCE_SLOTS", "draw_sentence", "sentence_pool_size"]

_EN = (
    ("The old farmer", "My younger sister", "Our new neighbour", "The tall teacher",
     "A quiet student", "His best friend", "The young doctor", "Her little brother",
     "The bus driver", "My grandmother", "The office manager", "A tired painter",
     "Our football coach", "The local baker", "My cousin from Boston", "The night nurse"),
    ("bought a blue bicycle", "painted the garden fence", "found an old letter",
     "cooked dinner for everyone", "read the morning paper", "opened the front window",
     "washed the kitchen floor", "wrote a long report", "planted some tomatoes",
     "fixed the broken chair", "called the bank", "carried the boxes upstairs",
     "moved the table", "sold the red car", "cleaned the windows", "visited the museum",
     "counted the chairs", "ordered a cup of tea"),
    ("on Monday morning", "after the meeting", "near the river", "before the train left",
     "at the station", "in the afternoon", "last weekend", "during the holidays",
     "next to the library", "yesterday evening", "on the way home", "at about nine o'clock",
     "behind the old school", "in the small village"),
)

_ZH = (
    ("我的朋友", "那位老师", "这个学生", "我妈妈", "他的哥哥", "那位医生", "我们的邻居",
     "小王", "李先生", "张太太", "我的同事", "那个司机", "我爷爷", "她的妹妹", "王经理"),
    ("今天", "昨晚", "星期一", "明天", "周末", "中午", "去年夏天", "前天", "晚饭后", "八点钟"),
    ("在公园里看书", "在图书馆看报", "在家打扫房间", "在火车站买票", "在门口等朋友",
     "在商店买水果", "去银行取钱", "在厨房做饭", "在办公室开会", "去医院看病人",
     "在河边散步", "在花园里种花", "给家里打电话", "在市场买菜", "坐车去城里",
     "在咖啡馆喝茶"),
)

_ES = (
    ("El viejo campesino", "Mi hermana menor", "El nuevo vecino", "La profesora alta",
     "Un estudiante tranquilo", "Su mejor amigo", "La joven doctora", "Mi hermano pequeño",
     "El conductor del autobús", "Mi abuela", "El director de la oficina", "Un pintor cansado",
     "Nuestro entrenador", "El panadero del barrio", "Mi primo de Sevilla", "La enfermera"),
    ("compró una bicicleta azul", "pintó la cerca del jardín", "encontró una carta antigua",
     "preparó la cena para todos", "leyó el periódico", "abrió la ventana grande",
     "lavó el suelo de la cocina", "escribió un informe largo", "plantó unos tomates",
     "arregló la silla rota", "llamó al banco", "subió las cajas", "movió la mesa",
     "vendió el coche rojo", "limpió las ventanas", "visitó el museo", "contó las sillas",
     "pidió una taza de té"),
    ("el lunes por la mañana", "después de la reunión", "cerca del río", "antes de la cena",
     "en la estación", "por la tarde", "el fin de semana pasado", "durante las vacaciones",
     "al lado de la biblioteca", "ayer por la noche", "de camino a casa", "a las nueve",
     "detrás de la escuela", "en el pueblo pequeño"),
)

# Finnish (Uralic): subject, verb + object, when / where. Objects take the case Finnish
# grammar asks for (accusative for a whole object, partitive for "some"), so each
# combination is grammatical.
_FI = (
    ("Vanha maanviljelijä", "Pikkusiskoni", "Uusi naapurimme", "Pitkä opettaja",
     "Hiljainen opiskelija", "Hänen paras ystävänsä", "Nuori lääkäri", "Hänen pikkuveljensä",
     "Bussinkuljettaja", "Isoäitini", "Toimiston johtaja", "Väsynyt maalari",
     "Jalkapallovalmentajamme", "Kylän leipuri", "Serkkuni Tampereelta", "Yövuoron hoitaja"),
    ("osti sinisen polkupyörän", "maalasi puutarhan aidan", "löysi vanhan kirjeen",
     "teki ruokaa koko perheelle", "luki aamulehden", "avasi olohuoneen ikkunan",
     "pesi keittiön lattian", "kirjoitti pitkän raportin", "istutti tomaatteja",
     "korjasi rikkinäisen tuolin", "soitti pankkiin", "kantoi laatikot yläkertaan",
     "siirsi pöydän", "myi punaisen auton", "puhdisti ikkunat", "kävi museossa",
     "laski tuolit", "tilasi kupin teetä"),
    ("maanantaiaamuna", "kokouksen jälkeen", "joen rannalla", "ennen junan lähtöä",
     "asemalla", "iltapäivällä", "viime viikonloppuna", "loman aikana",
     "kirjaston vieressä", "eilen illalla", "kotimatkalla", "noin yhdeksältä",
     "vanhan koulun takana", "pienessä kylässä"),
)

# Turkish (Turkic) is verb-final: subject, when / where, object + verb. No proper noun
# takes a case suffix, so no sentence needs the apostrophe Turkish writes before one
# (espeak would make it part of a word).
_TR = (
    ("Yaşlı çiftçi", "Küçük kız kardeşim", "Yeni komşumuz", "Uzun boylu öğretmen",
     "Sessiz bir öğrenci", "Onun en iyi arkadaşı", "Genç doktor", "Onun küçük erkek kardeşi",
     "Otobüs şoförü", "Büyükannem", "Ofis müdürü", "Yorgun bir ressam",
     "Futbol antrenörümüz", "Mahallenin fırıncısı", "İzmirli kuzenim", "Gece hemşiresi"),
    ("pazartesi sabahı", "toplantıdan sonra", "nehir kenarında", "tren kalkmadan önce",
     "istasyonda", "öğleden sonra", "geçen hafta sonu", "tatil sırasında",
     "kütüphanenin yanında", "dün akşam", "eve dönerken", "saat dokuz sularında",
     "eski okulun arkasında", "küçük köyde"),
    ("mavi bir bisiklet aldı", "bahçe çitini boyadı", "eski bir mektup buldu",
     "herkese yemek pişirdi", "sabah gazetesini okudu", "ön pencereyi açtı",
     "mutfağın yerini sildi", "uzun bir rapor yazdı", "biraz domates dikti",
     "kırık sandalyeyi tamir etti", "bankayı aradı", "kutuları yukarı taşıdı",
     "masanın yerini değiştirdi", "kırmızı arabayı sattı", "camları temizledi", "müzeyi gezdi",
     "sandalyeleri saydı", "bir fincan çay sipariş etti"),
)

# Slot lists per language, in sentence order; and how the slots are joined.
SENTENCE_SLOTS = {"en": _EN, "zh": _ZH, "es": _ES, "fi": _FI, "tr": _TR}
_JOIN = {"en": " ", "zh": "", "es": " ", "fi": " ", "tr": " "}
_END = {"en": ".", "zh": "。", "es": ".", "fi": ".", "tr": "."}
# Which slots a short sentence keeps (the rest of a long one): subject and verb, which
# in Mandarin and Turkish are the first and last slot.
_SHORT = {"en": (0, 1), "zh": (0, 2), "es": (0, 1), "fi": (0, 1), "tr": (0, 2)}
_SHORT_PROBABILITY = 0.3


def draw_sentence(language: str, rng: np.random.Generator) -> str:
    """One sentence: an entry of every slot, or of the short slots only (30 %)."""
    slots = SENTENCE_SLOTS[language]
    keep = _SHORT[language] if rng.random() < _SHORT_PROBABILITY else range(len(slots))
    picks = [slots[i][rng.integers(len(slots[i]))] for i in range(len(slots))]
    return _JOIN[language].join(picks[i] for i in keep) + _END[language]


def sentence_pool_size(language: str) -> int:
    """Number of distinct sentences draw_sentence can return for `language`."""
    slots = SENTENCE_SLOTS[language]
    full = int(np.prod([len(s) for s in slots]))
    short = int(np.prod([len(slots[i]) for i in _SHORT[language]]))
    return full + short

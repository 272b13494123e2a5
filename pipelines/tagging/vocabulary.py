"""The generator's tag-specific vocabulary: real words of each section, with planted overlaps.

Three kinds of difficulty are built in on purpose:

* **shared words**: some words belong to two sections (``經濟`` is finance and politics, ``運動`` sports and
  health), so one word rarely decides an article;
* **anagram pairs**: :data:`ANAGRAMS` are the same two characters in the opposite order with a different
  meaning in different sections (``故事`` story / ``事故`` accident, ``賽馬`` horse racing / ``馬賽`` Marseille):
  exactly the seed's argument for words over characters. Character *unigrams* cannot tell them apart; words
  and character bigrams can;
* **shared characters**: most sections' words share characters with other sections' words (``股市`` / ``市民``
  / ``市場``), so unseen words are partly recognisable from their characters, the counter-argument.
"""

from __future__ import annotations

#: (word, its section), (the same characters reversed, another section).
ANAGRAMS: tuple[tuple[tuple[str, str], tuple[str, str]], ...] = (
    (("故事", "entertainment"), ("事故", "travel")),
    (("人工", "finance"), ("工人", "politics")),
    (("黃金", "finance"), ("金黃", "food")),
    (("蜂蜜", "food"), ("蜜蜂", "travel")),
    (("球星", "sports"), ("星球", "tech")),
    (("賽馬", "sports"), ("馬賽", "travel")),
    (("路線", "travel"), ("線路", "tech")),
    (("國法", "politics"), ("法國", "travel")),
    (("京東", "tech"), ("東京", "travel")),
    (("議會", "politics"), ("會議", "finance")),
)

_WORDS: dict[str, str] = {
    "finance": "股票 股市 恒指 恒生指數 加息 減息 利率 銀行 按揭 樓價 樓市 基金 投資 債券 匯率 港元 美元 通脹 經濟 "
               "盈利 業績 派息 上市 招股 市值 成交額 散戶 牛市 熊市 期貨 外匯 財政預算 稅收 人民幣 供股 強積金 "
               "炒股 蝕本 區塊鏈 加密貨幣",
    "entertainment": "電影 明星 歌手 演唱會 唱片 導演 劇集 電視劇 藝人 緋聞 頒獎禮 影帝 影后 首映 票房 綜藝 偶像 "
                     "粉絲 派台歌 劇本 拍攝 主角 配角 樂隊 專輯 娛樂圈 記者會 代言 舞台 戲院 追星 網紅 串流 冠軍",
    "sports": "足球 籃球 網球 游泳 比賽 球隊 球員 教練 入球 冠軍 聯賽 世界盃 奧運 金牌 馬拉松 跑手 球迷 主場 "
              "作客 十二碼 射門 守門員 前鋒 後衛 練馬師 騎師 泳手 羽毛球 乒乓波 單車 欖球 決賽 晉級 運動",
    "politics": "政府 立法會 議員 選舉 投票 政策 特首 施政報告 法案 條例 官員 局長 諮詢 議案 政黨 建制派 "
                "民主派 市民 示威 遊行 外交 制裁 國安 區議會 司長 行政長官 預算案 選民 參選 民調 經濟 稅收 疫苗",
    "tech": "手機 電腦 科技 網絡 程式 軟件 硬件 人工智能 晶片 數據 雲端 應用程式 智能手機 平板 黑客 網絡安全 "
            "創科 初創 機械人 演算法 伺服器 區塊鏈 加密貨幣 電動車 充電 處理器 系統 更新 私隱 串流",
    "food": "餐廳 茶餐廳 點心 燒味 叉燒 奶茶 蛋撻 菠蘿包 雲吞麵 火鍋 食材 廚師 菜式 甜品 飲茶 食肆 外賣 米芝蓮 "
            "打卡 菜單 口感 醬汁 海鮮 牛腩 魚蛋 車仔麵 放題 咖啡 烘焙 食評 營養 手信",
    "travel": "旅行 機票 酒店 景點 行程 自由行 導遊 旅行團 簽證 護照 機場 航班 郵輪 民宿 背包客 觀光 日本 台灣 "
              "泰國 韓國 歐洲 入境 出境 行李 登機 轉機 退稅 手信 溫泉 打卡",
    "health": "醫生 醫院 病人 疫苗 病毒 感染 確診 症狀 治療 藥物 手術 急症室 護士 健康 飲食習慣 癌症 糖尿病 "
              "血壓 膽固醇 睡眠 抑鬱 精神健康 中醫 西醫 體檢 營養 減肥 流感 口罩 運動 游泳",
}


def tag_words() -> dict[str, list[str]]:
    """Each section's words: the anagram words first (the generator gives the first words the highest
    frequency, so the order test has weight), then the rest in the order above."""
    words: dict[str, list[str]] = {tag: [] for tag in _WORDS}
    for pair in ANAGRAMS:
        for word, tag in pair:
            words[tag].append(word)
    for tag, text in _WORDS.items():
        words[tag] += [w for w in text.split() if w not in words[tag]]
    return words


def shared_words() -> dict[str, list[str]]:
    """Words that belong to more than one section, with their sections."""
    owners: dict[str, list[str]] = {}
    for tag, words in tag_words().items():
        for word in words:
            owners.setdefault(word, []).append(tag)
    return {w: tags for w, tags in owners.items() if len(tags) > 1}


#: Headline shapes: ``{w}`` is a topic word, ``{x}`` a short phrase of everyday Cantonese.
TITLE_TEMPLATES: tuple[str, ...] = (
    "{w}最新消息", "{w}：{x}", "點睇{w}？", "{w}話你知", "{w}又有新搞作", "{x}，{w}點算？", "{w}專題：{x}",
    "一文睇清{w}", "{w}之後{x}", "直擊{w}",
)
#: Phrases that bring a topic word into a sentence that had no noun for it.
INSERT_TEMPLATES: tuple[str, ...] = ("講到{w}", "有關{w}", "{w}方面", "{w}嘅事", "話說{w}")

"""The catalogues are complete and compiled: every message the code and templates mark
for translation (extracted as `make translations` does, from babel.cfg) has a German and
a French translation with the same placeholders, and each committed .mo says what its
.po says. A failure names the messages: translate them in app/translations/<lang>/
LC_MESSAGES/messages.po, then `make translations`."""

from __future__ import annotations

import gettext
import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[2]
TRANSLATIONS = ROOT / "app" / "translations"
LANGUAGES = ("de", "fr")
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "lazy_gettext": None, "N_": None}
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")


def _used_messages() -> dict[str, str]:
    """msgid → where it is used, for every message the code and templates mark."""
    with open(ROOT / "babel.cfg") as config:
        method_map, options_map = parse_mapping_cfg(config)
    found: dict[str, str] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=KEYWORDS
    ):
        msgid = message[0] if isinstance(message, tuple) else message
        if msgid:
            found.setdefault(msgid, f"{filename}:{lineno}")
    return found


def _catalogue(language: str):  # type: ignore[no-untyped-def]
    with open(TRANSLATIONS / language / "LC_MESSAGES" / "messages.po", "rb") as po:
        return read_po(po, locale=language)


def test_the_code_marks_messages() -> None:
    used = _used_messages()
    assert "Wrong username, email or password" in used and "Sign in" in used


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_used_message_is_translated(language: str) -> None:
    catalogue = _catalogue(language)
    problems = []
    for msgid, where in sorted(_used_messages().items()):
        message = catalogue.get(msgid)
        strings = (
            () if message is None else message.string if message.pluralizable else (message.string,)
        )
        if message is None or message.fuzzy or not all(strings):
            problems.append(f"{where}: {msgid!r} has no {language} translation")
            continue
        wanted = set(PLACEHOLDER.findall(msgid))
        for string in strings:
            if set(PLACEHOLDER.findall(string)) != wanted and "num" not in wanted:
                problems.append(f"{where}: {msgid!r}: the {language} text has other placeholders")
    assert not problems, "untranslated (make translations, then fill the .po):\n" + "\n".join(
        problems
    )


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_compiled_catalogue_matches_its_source(language: str) -> None:
    catalogue = _catalogue(language)
    with open(TRANSLATIONS / language / "LC_MESSAGES" / "messages.mo", "rb") as mo:
        compiled = gettext.GNUTranslations(mo)._catalog  # type: ignore[attr-defined]
    expected: dict[object, str] = {}
    for message in catalogue:
        if not message.id or message.fuzzy:
            continue
        if message.pluralizable:
            for index, string in enumerate(message.string):
                if string:
                    expected[(message.id[0], index)] = string
        elif message.string:
            expected[message.id] = message.string
    actual = {key: value for key, value in compiled.items() if key != ""}
    stale = sorted(str(key) for key in set(expected) ^ set(actual)) + sorted(
        str(key) for key in set(expected) & set(actual) if expected[key] != actual[key]
    )
    assert not stale, (
        f"{language}: messages.mo is stale against messages.po (make translations): {stale[:10]}"
    )

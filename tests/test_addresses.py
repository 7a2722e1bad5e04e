"""Outage-notice address lists: the forms understood, the ones reported, and matching to the register."""

from __future__ import annotations

import geopandas as gpd
import pytest
from shapely.geometry import Point

from assets.addresses import BuildingAddress, normalize_house, normalize_street, parse_address_list
from assets.geocode import AddressIndex


def understood(text: str) -> list[tuple[str, str]]:
    """(street, house) keys of a notice that must be understood in full."""
    addresses, not_understood = parse_address_list(text)
    assert not_understood == []
    return [(address.street, address.house) for address in addresses]


def on(street: str, *houses: str) -> list[tuple[str, str]]:
    return [(street, house) for house in houses]


class TestHouseLists:
    def test_street_then_houses(self) -> None:
        assert understood("ул. Ленина, 1, 3, 5а") == on("ленина", "1", "3", "5а")

    def test_streets_separated_by_semicolon(self) -> None:
        assert understood("ул. Ленина, 1, 3; пер. Почтовый, 2") == [*on("ленина", "1", "3"), *on("почтовый пер", "2")]

    def test_a_street_type_word_starts_the_next_street(self) -> None:
        assert understood("ул. Ленина 1, 3, ул. Карла Маркса 10") == [
            *on("ленина", "1", "3"),
            *on("карла маркса", "10"),
        ]

    def test_streets_on_separate_lines(self) -> None:
        assert understood("ул. Ленина: 1, 3\nпер. Почтовый: 2") == [*on("ленина", "1", "3"), *on("почтовый пер", "2")]

    def test_houses_joined_by_and(self) -> None:
        assert understood("ул. Ленина, 1, 3 и 5") == on("ленина", "1", "3", "5")

    def test_repeated_building_is_listed_once(self) -> None:
        assert understood("ул. Ленина, 1, 3, 1") == on("ленина", "1", "3")


class TestRanges:
    def test_range_keeps_the_side_of_the_street(self) -> None:
        assert understood("ул. Карла Маркса, 2-12") == on("карла маркса", "2", "4", "6", "8", "10", "12")

    @pytest.mark.parametrize("dash", ["–", "—", " - "])
    def test_en_and_em_dashes(self, dash: str) -> None:
        assert understood(f"ул. Ленина, 1{dash}7") == on("ленина", "1", "3", "5", "7")

    def test_from_to_words(self) -> None:
        assert understood("ул. Ленина, с 2 по 8") == on("ленина", "2", "4", "6", "8")

    def test_ends_of_different_parity_expand_to_every_number(self) -> None:
        assert understood("ул. Ленина, 1-4") == on("ленина", "1", "2", "3", "4")

    def test_houses_and_ranges_mix(self) -> None:
        assert understood("ул. Ленина, 5, с 7 по 11, 20") == on("ленина", "5", "7", "9", "11", "20")


class TestSideOfTheStreet:
    def test_even(self) -> None:
        assert understood("ул. Ленина, чётные 2-10") == on("ленина", "2", "4", "6", "8", "10")

    def test_odd_narrows_a_mixed_range(self) -> None:
        assert understood("ул. Ленина, нечетные 1-10") == on("ленина", "1", "3", "5", "7", "9")

    def test_side_in_parentheses_applies_to_the_range_before_it(self) -> None:
        assert understood("ул. Ленина, 1-10 (чётная сторона)") == on("ленина", "2", "4", "6", "8", "10")

    def test_side_as_a_phrase(self) -> None:
        assert understood("ул. Ленина с нечётной стороны 1-6") == on("ленина", "1", "3", "5")

    def test_side_carries_over_commas_until_the_street_changes(self) -> None:
        assert understood("ул. Ленина, чётные 1-5, 7-9; ул. Мира, 1-4") == [
            *on("ленина", "2", "4", "8"),
            *on("мира", "1", "2", "3", "4"),
        ]


class TestBuildings:
    @pytest.mark.parametrize(
        ("written", "house"),
        [
            ("д. 7 корп. 2", "7к2"),
            ("д.7, корп.2", "7к2"),
            ("7 к. 2", "7к2"),
            ("7к2", "7к2"),
            ("7/1", "7/1"),
            ("12 стр. 3", "12с3"),
            ("3с1", "3с1"),
            ("дом 5А", "5а"),
            ("5a", "5а"),  # Latin a
            ("5, литер Б", "5б"),
            ("№ 05", "5"),
        ],
    )
    def test_house_forms(self, written: str, house: str) -> None:
        assert understood(f"ул. Ленина, {written}") == on("ленина", house)

    def test_second_corpus_of_the_same_house(self) -> None:
        assert understood("ул. Ленина, д. 7 корп. 1, корп. 2") == on("ленина", "7к1", "7к2")


class TestStreets:
    @pytest.mark.parametrize(
        "written",
        ["ул. Ленина", "Ленина ул.", "улица Ленина", "ул.Ленина", "Ленина", "УЛ. ЛЕНИНА", "«Ленина» ул", "yл. Ленина"],
    )
    def test_ways_to_write_a_street(self, written: str) -> None:
        assert understood(f"{written}, 5") == on("ленина", "5")

    @pytest.mark.parametrize(
        ("written", "key"),
        [
            ("пр. Мира", "мира пр-т"),
            ("пр-т Мира", "мира пр-т"),
            ("проспект Мира", "мира пр-т"),
            ("Мира проспект", "мира пр-т"),
            ("пер. Почтовый", "почтовый пер"),
            ("переулок Почтовый", "почтовый пер"),
            ("б-р Гагарина", "гагарина б-р"),
            ("бульвар Гагарина", "гагарина б-р"),
            ("пл. Кирова", "кирова пл"),
            ("площадь Кирова", "кирова пл"),
            ("Качугский ш.", "качугский ш"),
            ("шоссе Качугское", "качугское ш"),
            ("наб. Иркута", "иркута наб"),
            ("набережная Иркута", "иркута наб"),
            ("проезд Строительный", "строительный проезд"),
            ("мкр. Университетский", "университетский мкр"),
            ("микрорайон Университетский", "университетский мкр"),
            ("тупик Заводской", "заводской туп"),
        ],
    )
    def test_street_types_are_part_of_the_key(self, written: str, key: str) -> None:
        assert understood(f"{written}, 1") == on(key, "1")

    def test_same_name_with_another_type_is_another_street(self) -> None:
        assert normalize_street("Пушкина ул.") != normalize_street("Пушкина пер.")

    @pytest.mark.parametrize(
        ("written", "key"),
        [
            ("ул. Ёлочная", "елочная"),
            ("ул.   Карла    Маркса", "карла маркса"),
            ('ул. "Набережная"', "набережная"),
            ("ул. 50 лет Октября", "50 лет октября"),
            ("2-ая Железнодорожная ул.", "2-я железнодорожная"),
            ("Железнодорожная 2-я", "2-я железнодорожная"),
        ],
    )
    def test_street_key(self, written: str, key: str) -> None:
        assert normalize_street(written) == key

    def test_numbered_street_in_a_notice(self) -> None:
        assert understood("ул. 50 лет Октября, 5") == on("50 лет октября", "5")

    @pytest.mark.parametrize(
        "written",
        [
            "ул. Верхняя Набережная, 2",
            "Верхняя наб., 2",
            "Верхняя набережная, д. 2",
            "ул. Верхняя Набережная 2",
            "Верхняя Набережная ул., 2",
            "наб. Верхняя, 2",
        ],
    )
    def test_type_word_closing_a_name_is_the_type(self, written: str) -> None:
        assert understood(written) == on("верхняя наб", "2")

    @pytest.mark.parametrize(
        "written", ["ул. Верхняя Набережная", "Верхняя Набережная ул", "Верхняя наб.", "верхняя набережная"]
    )
    def test_register_spellings_of_a_type_word_closing_a_name(self, written: str) -> None:
        assert normalize_street(written) == "верхняя наб"

    def test_square_closing_a_name(self) -> None:
        assert understood("ул. Старая Площадь, 4") == on("старая пл", "4")
        assert normalize_street("ул. Старая Площадь") == "старая пл"

    def test_type_word_followed_by_a_name_is_not_taken(self) -> None:
        assert parse_address_list("ул. Ленина пер. Почтовый 2") == ([], ["ул. Ленина пер. Почтовый 2"])


class TestNoise:
    @pytest.mark.parametrize(
        "text",
        [
            "г. Иркутск, ул. Ленина, 5",
            "г Иркутск ул. Ленина 5",
            "Иркутская обл., г. Иркутск, ул. Ленина, д. 5",
            "  ул.  Ленина ,   5 . ",
            "ул. Ленина, д. 5.",
            "ул. Ленина, дом №5",
            "ул. Ленина д.5",
        ],
    )
    def test_settlement_and_punctuation_are_ignored(self, text: str) -> None:
        assert understood(text) == on("ленина", "5")


class TestWhatIsNotUnderstood:
    @pytest.mark.parametrize("text", ["", "   ", ",;,", None])
    def test_empty_text_names_nothing(self, text: str) -> None:
        assert parse_address_list(text) == ([], [])

    @pytest.mark.parametrize("text", ["!!!", "абракадабра", "Плановое отключение электроэнергии", "12345", "@#$%"])
    def test_garbage_is_reported_not_raised(self, text: str) -> None:
        assert parse_address_list(text) == ([], [text])

    @pytest.mark.parametrize("fragment", ["1-1000", "1-9999999999", "10-2", "7к2-7к5", "2-12а", "1-"])
    def test_unusable_range_is_reported(self, fragment: str) -> None:
        assert parse_address_list(f"ул. Ленина, {fragment}") == ([], [fragment])

    def test_a_range_of_200_houses_is_still_accepted(self) -> None:
        assert len(understood("ул. Ленина, 2-400")) == 200

    def test_good_fragments_survive_a_bad_one(self) -> None:
        addresses, not_understood = parse_address_list("ул. Ленина, 1, ???, 3")
        assert addresses == [BuildingAddress("ленина", "1"), BuildingAddress("ленина", "3")]
        assert not_understood == ["???"]

    def test_a_doubtful_fragment_yields_no_building_at_all(self) -> None:
        # "5 а" with a space is not guessed to be 5а, nor reduced to 5
        assert parse_address_list("ул. Ленина 5 а, 7") == ([BuildingAddress("ленина", "7")], ["ул. Ленина 5 а"])

    def test_street_without_houses(self) -> None:
        assert parse_address_list("ул. Ленина (чётная сторона)") == ([], ["ул. Ленина (чётная сторона)"])

    def test_houses_without_street(self) -> None:
        assert parse_address_list("1, 3") == ([], ["1", "3"])

    def test_apartment_is_not_a_street(self) -> None:
        assert parse_address_list("ул. Ленина, 5, кв. 3") == ([BuildingAddress("ленина", "5")], ["кв. 3"])


class TestNormalizeHouse:
    @pytest.mark.parametrize(
        ("written", "key"),
        [
            ("1", "1"),
            ("д. 7 корп. 2", "7к2"),
            ("7 к 2", "7к2"),
            ("7К2", "7к2"),
            ("12 стр 3", "12с3"),
            ("дом 5А", "5а"),
            ("5 А", "5а"),
            ("5A", "5а"),
            ("12/1", "12/1"),
            ("3c1", "3с1"),
            ("007", "7"),
            ("б/н", "б/н"),
            ("", ""),
        ],
    )
    def test_house_key(self, written: str, key: str) -> None:
        assert normalize_house(written) == key


REGISTER = [
    ("ул Ленина", "1", "Ленина 1"),
    ("Ленина ул.", "3", "Ленина 3"),
    ("улица Ленина", "5 А", "Ленина 5а"),
    ("ул. Ленина", "7", "Ленина 7"),
    ("ул. Ленина", "7 корп. 1", "Ленина 7к1"),
    ("пер. Почтовый", "2", "Почтовый 2"),
    ("Пушкина ул", "4", "ул. Пушкина 4"),
    ("Пушкина пер", "4", "пер. Пушкина 4"),
    ("ул. Мира", "9", "Мира 9, первый"),
    ("ул. Мира", "9", "Мира 9, второй"),
    (None, "10", "без улицы"),
]


@pytest.fixture
def register() -> AddressIndex[str]:
    return AddressIndex(REGISTER)


class TestAddressIndex:
    def test_notice_and_register_meet_on_the_same_key(self, register: AddressIndex[str]) -> None:
        matched, reasons = register.match_text("ул. Ленина, 1, 3, 5А, д. 7 корп. 1")
        assert [payload for _, payload in matched] == ["Ленина 1", "Ленина 3", "Ленина 5а", "Ленина 7к1"]
        assert reasons == []

    def test_lookup(self, register: AddressIndex[str]) -> None:
        assert register.lookup(BuildingAddress("ленина", "5а")) == "Ленина 5а"
        assert register.lookup(BuildingAddress("ленина", "99")) is None

    @pytest.mark.parametrize("house", ["7к2", "1а", "3с1"])
    def test_corpus_or_letter_missing_from_the_register_is_not_guessed(
        self, register: AddressIndex[str], house: str
    ) -> None:
        assert register.lookup(BuildingAddress("ленина", house)) is None

    def test_type_word_distinguishes_streets(self, register: AddressIndex[str]) -> None:
        assert register.lookup(BuildingAddress("пушкина", "4")) == "ул. Пушкина 4"
        assert register.lookup(BuildingAddress("пушкина пер", "4")) == "пер. Пушкина 4"

    def test_wrong_type_word_finds_the_only_street_of_that_name(self, register: AddressIndex[str]) -> None:
        matched, reasons = register.match_text("ул. Почтовый, 2")
        assert matched == [(BuildingAddress("почтовый пер", "2"), "Почтовый 2")]
        assert reasons == []

    def test_missing_house_is_reported_as_written(self, register: AddressIndex[str]) -> None:
        matched, reasons = register.match_text("ул. Ленина, 1, 99")
        assert [payload for _, payload in matched] == ["Ленина 1"]
        assert reasons == ["не найден в адресном реестре: ул. Ленина, 99 («99»)"]

    def test_missing_corpus_reason_shows_what_the_register_has(self, register: AddressIndex[str]) -> None:
        matched, reasons = register.match_text("ул. Ленина, д.7, корп.2")
        assert matched == []
        assert reasons == ["не найден в адресном реестре: ул. Ленина, 7к2 («д.7, корп.2»); в реестре есть 7, 7к1"]

    def test_unknown_street_is_reported(self, register: AddressIndex[str]) -> None:
        _, reasons = register.match_text("ул. Неизвестная, 1")
        assert reasons == ["улица не найдена в адресном реестре: ул. Неизвестная, 1 («1»)"]

    def test_building_registered_twice_with_different_payloads_is_ambiguous(self, register: AddressIndex[str]) -> None:
        assert register.lookup(BuildingAddress("мира", "9")) is None
        _, reasons = register.match_text("ул. Мира, 9")
        assert reasons[0].startswith("неоднозначно")

    def test_fragments_not_understood_are_reasons_too(self, register: AddressIndex[str]) -> None:
        matched, reasons = register.match_text("ул. Ленина, 1, ???; абракадабра")
        assert len(matched) == 1
        assert reasons == ["не распознано: «???»", "не распознано: «абракадабра»"]

    @pytest.mark.parametrize("text", ["ул. Верхняя Набережная, 2", "Верхняя наб., 2", "Верхняя набережная, д. 2"])
    def test_type_word_closing_a_name_matches_the_register(self, text: str) -> None:
        index = AddressIndex([("ул. Верхняя Набережная", "2", "Верхняя Набережная 2")])
        assert index.match_text(text) == ([(BuildingAddress("верхняя наб", "2"), "Верхняя Набережная 2")], [])

    def test_rows_without_street_or_house_are_skipped(self, register: AddressIndex[str]) -> None:
        assert register.skipped == 1

    def test_from_frame_uses_row_geometry(self) -> None:
        frame = gpd.GeoDataFrame(
            {"street": ["ул. Ленина", "пер. Почтовый", None], "house": ["5А", 2.0, "1"]},
            geometry=[Point(104.28, 52.28), Point(104.29, 52.29), Point(104.3, 52.3)],
            crs="EPSG:4326",
        )
        index = AddressIndex.from_frame(frame, "street", "house")
        matched, reasons = index.match_text("Ленина ул., дом 5а; пер. Почтовый, 2; ул. Ленина, 1")
        assert [(address, geometry.coords[0]) for address, geometry in matched] == [
            (BuildingAddress("ленина", "5а"), (104.28, 52.28)),
            (BuildingAddress("почтовый пер", "2"), (104.29, 52.29)),
        ]
        assert reasons == ["не найден в адресном реестре: ул. Ленина, 1 («1»)"]

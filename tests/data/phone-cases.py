#!/usr/bin/env python3
"""Writes phone-cases.tsv: random phone inputs with the answers of Python's
`phonenumbers`, a port of Google's libphonenumber (pip install
phonenumbers). `domain::phone`'s test reads every line and must give the
same answer, so a change of our phone library or of its metadata that
reads a number differently from Google's shows in `cargo test`.

The answer is the number in E.164 when it is valid in its numbering plan,
an empty field when it is not. A number with an extension is refused by
us (an SMS cannot reach an extension), so it is written as refused here.
Use the release of phonenumbers whose metadata is the one our library
carries (rlibphonenumber's README names it: 9.0.42 for 2.2.15; 9.0.43
already reads some Romanian numbers differently), and run it again, and
commit the file, when the library moves on:

    pip install phonenumbers==9.0.42

    python3 tests/data/phone-cases.py > tests/data/phone-cases.tsv
"""
import random

import phonenumbers

REGIONS = ["ID", "IT", "US", "GB", "RU", "JP", "AU", "DE", "FR", "IN",
           "BR", "MY", "SG", "CN", "NG", "MX", "AR", "KZ", "CA", "ZA"]
PREFIXES = ["", "+", "0", "00", "+62", "+1", "+44", "0062", "001", "+39 0",
            "8", "tel:+", "(0", "+7 ", "62", "+800"]
SEPARATORS = ["", " ", "-", "."]
EXTENSIONS = [" ext. 12", "#", "x9"]


def answer(text, region):
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return ""
    if number.extension or not phonenumbers.is_valid_number(number):
        return ""
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def written_as_people_do(rng):
    """Every region's example numbers, their last digits changed, written
    nationally, internationally, in E.164 and as a tel: URI: mostly valid."""
    formats = [phonenumbers.PhoneNumberFormat.NATIONAL,
               phonenumbers.PhoneNumberFormat.INTERNATIONAL,
               phonenumbers.PhoneNumberFormat.E164,
               phonenumbers.PhoneNumberFormat.RFC3966]
    kinds = [phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE]
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in kinds:
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            for _ in range(3):
                national = str(example.national_number)
                national = national[:-3] + "".join(str(rng.randrange(10)) for _ in range(3))
                number = phonenumbers.PhoneNumber(
                    country_code=example.country_code,
                    national_number=int(national),
                    italian_leading_zero=example.italian_leading_zero,
                    number_of_leading_zeros=example.number_of_leading_zeros)
                text = phonenumbers.format_number(number, rng.choice(formats))
                # Read where it was written, or from elsewhere when it
                # carries its country code.
                reader = region if text[0] not in "+t" else rng.choice(REGIONS)
                yield reader, text


def random_digits(rng):
    """Digits after a prefix people type: mostly invalid."""
    for _ in range(4000):
        region = rng.choice(REGIONS)
        text = rng.choice(PREFIXES)
        for position in range(4 + rng.randrange(11)):
            text += str(rng.randrange(10))
            if position == 3 and rng.randrange(3) == 0:
                text += rng.choice(SEPARATORS)
        if rng.randrange(20) == 0:
            text += rng.choice(EXTENSIONS)
        yield region, text


def main():
    rng = random.Random(38)
    print(f"# phonenumbers {phonenumbers.__version__}; region, input, E.164 or empty when invalid")
    for region, text in [*written_as_people_do(rng), *random_digits(rng)]:
        print(f"{region}\t{text}\t{answer(text, region)}")


main()

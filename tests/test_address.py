"""simmta.core.address: its character classes say what the RFC 5321 checks and
Postfix's printable() say, character by character (they are regexes for speed)."""

from simmta.core import address, queue

CHARACTERS = [chr(i) for i in range(0x3000)] + ["\u2028", "\ufeff", "\U0001f600", "\udcff", "\U0010ffff"]


def test_every_character_class_agrees_with_its_definition() -> None:
    for c in CHARACTERS:
        text = f"ab{c}d"
        code = ord(c)
        control = code < 32 or code == 127
        assert address.printable(text) == f"ab{c if 32 <= code < 127 else '?'}d"
        assert (address.syntax_error(f"a{c}b@example.org") == "control character or space in address") == (
            control or c == " "
        )
        assert address.unsafe_local_part(text) == (control or c == "/")
        assert address.routing_syntax(text) == (c in "%!@")
        try:
            queue._address(text.encode("utf-8", "surrogatepass"))
            refused = False
        except (ValueError, UnicodeDecodeError):
            refused = True
        assert refused == (control or 0xD800 <= code <= 0xDFFF)

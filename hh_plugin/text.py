"""Text shown to a person: strings from files and exceptions made safe for a terminal.

Pure Python with no imports, so that the command line can report an error (or an
interrupt) at any point of its start-up without importing numpy or the export package.
"""


def printable(text) -> str:
    """``text`` with every non-printable character (controls such as terminal escape
    sequences, lone surrogates, line separators) written as its Python escape: strings
    from a file are shown, never interpreted by a terminal."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in str(text))

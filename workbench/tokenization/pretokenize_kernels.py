r"""Numba scanners of the pre-tokenizers: one per pattern of :data:`~workbench.tokenization.pretokenize.PATTERNS`.

Each scanner decodes UTF-8 on the fly (an invalid byte is one "other" character, as ``surrogateescape`` makes it)
and looks each code point's class up in :func:`~workbench.tokenization.unicode_classes.class_table`. They share
one calling convention: scan ``data`` (uint8[n]) from byte ``pos``, writing piece ends to ``out[k], out[k + 1],
...`` until the text or ``out`` is used up; return the new ``(k, pos)``. :func:`scan_documents` runs one of them on
each of several documents. :mod:`workbench.tokenization.pretokenize` holds the Python API (names, checks, buffers)
and the regex definitions these are tested against.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from workbench.tokenization.unicode_classes import CLASS_MASK, CRLF, DIGIT, LETTER, NUMBER, OTHER, SPACE


@njit(cache=True)
def _decode(data, i, n):
    """(code point, length in bytes) of the UTF-8 character at ``data[i]``.

    An invalid byte (stray continuation, overlong or surrogate form, truncated sequence, > U+10FFFF) is a 1-byte
    character ``0xDC00 + byte``, exactly what Python's ``surrogateescape`` makes of it.
    """
    b0 = np.int64(data[i])
    if b0 < 0x80:
        return b0, 1
    if b0 < 0xC2 or b0 > 0xF4:
        return 0xDC00 + b0, 1
    if b0 < 0xE0:
        if i + 1 < n:
            b1 = np.int64(data[i + 1])
            if b1 & 0xC0 == 0x80:
                return ((b0 & 0x1F) << 6) | (b1 & 0x3F), 2
        return 0xDC00 + b0, 1
    if b0 < 0xF0:
        if i + 2 < n:
            b1 = np.int64(data[i + 1])
            b2 = np.int64(data[i + 2])
            lo = 0xA0 if b0 == 0xE0 else 0x80
            hi = 0x9F if b0 == 0xED else 0xBF
            if lo <= b1 <= hi and b2 & 0xC0 == 0x80:
                return ((b0 & 0x0F) << 12) | ((b1 & 0x3F) << 6) | (b2 & 0x3F), 3
        return 0xDC00 + b0, 1
    if i + 3 < n:
        b1 = np.int64(data[i + 1])
        b2 = np.int64(data[i + 2])
        b3 = np.int64(data[i + 3])
        lo = 0x90 if b0 == 0xF0 else 0x80
        hi = 0x8F if b0 == 0xF4 else 0xBF
        if lo <= b1 <= hi and b2 & 0xC0 == 0x80 and b3 & 0xC0 == 0x80:
            return ((b0 & 0x07) << 18) | ((b1 & 0x3F) << 12) | ((b2 & 0x3F) << 6) | (b3 & 0x3F), 4
    return 0xDC00 + b0, 1


# Not inline="always", like `_space_tail` below (see its comment): inlined, Numba's reference counting around the
# loop made the GPT-2, cl100k and smollm2 scanners ~1.5x slower (174-186 -> 265-282 MB/s on the shipped samples).
@njit(cache=True, _nrt=False)
def _run(data, n, table, q, cls, stop):
    """End of the run of characters of class ``cls`` starting at byte ``q``; a character with a flag in ``stop``
    ends it too."""
    while q < n:
        cp = np.int64(data[q])  # ASCII inline: a call per character would halve the speed
        ln = 1
        if cp >= 0x80:
            cp, ln = _decode(data, q, n)
        t = table[cp]
        if t & CLASS_MASK != cls or t & stop:
            break
        q += ln
    return q


# Not inline="always": Numba would incref/decref ``data`` and ``table`` around every inlined call with a loop
# inside (the pair spans basic blocks, its pruning pass keeps it), 2.5x slower on white-space-heavy text.
# ``_nrt=False`` (no reference counting: it allocates nothing) as Numba does for its own string helpers; LLVM
# inlines it into every scanner.
@njit(cache=True, _nrt=False)
def _space_tail(data, n, table, pos, q, stop, nl_end):
    """End of the piece ``\\s+(?!\\S)|\\s+`` that starts with the white-space character at byte ``pos`` (ending at
    ``q``), as ``(end, nl_end)``: the GPT-2/tiktoken rule that a run of white space gives its last character to
    the word after it.

    The run goes on while characters are white space. It ends the piece at its end when it reaches the end of the
    text, or a character with a flag in ``stop`` (the end of a smollm2 stretch), or is one character long;
    otherwise before its last character. ``nl_end`` is the end of the run's last ``\\r``/``\\n``: pass the
    first character's (or -1), get the whole run's (``\\s*[\\r\\n]`` of cl100k; the other scanners ignore it).
    """
    last = pos  # start of the run's last character
    tx = 0
    while q < n:
        cpx = np.int64(data[q])  # ASCII inline: a call per character would halve the speed
        lnx = 1
        if cpx >= 0x80:
            cpx, lnx = _decode(data, q, n)
        tx = table[cpx]
        if tx & CLASS_MASK != SPACE:
            break
        last = q
        q += lnx
        if tx & CRLF:
            nl_end = q
    if q == n or tx & stop:
        return q, nl_end  # the run reaches the end of the text (or of the stretch)
    if last > pos:
        return last, nl_end  # leave the last space for the next word
    return q, nl_end


@njit(cache=True)
def scan_gpt2(data, table, isolate_digits, pos, out, k):
    """Boundaries of ``'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+``.

    With ``isolate_digits`` (smollm2) every DIGIT character is a piece of its own and acts as the end of the text
    for the stretch before it (HF runs the regex on each stretch separately).

    All scanners share one calling convention: scan ``data`` (uint8[n]) from byte ``pos``, writing piece ends to
    ``out[k], out[k + 1], ...`` until the text or ``out`` is used up; return the new ``(k, pos)``.
    """
    n = data.shape[0]
    stop = DIGIT if isolate_digits else 0
    while pos < n and k < out.shape[0]:
        cp = np.int64(data[pos])  # ASCII inline: a call per character would halve the speed
        ln = 1
        if cp >= 0x80:
            cp, ln = _decode(data, pos, n)
        t = table[cp]
        c = t & CLASS_MASK
        end = -1
        if t & stop:
            end = pos + ln
        elif cp == 0x27 and pos + 1 < n:  # 's 't 'm 'd 're 've 'll (ASCII, so bytes are characters)
            b1 = data[pos + 1]
            if b1 == 0x73 or b1 == 0x74 or b1 == 0x6D or b1 == 0x64:
                end = pos + 2
            elif pos + 2 < n:
                b2 = data[pos + 2]
                if (b1 == 0x72 and b2 == 0x65) or (b1 == 0x76 and b2 == 0x65) or (b1 == 0x6C and b2 == 0x6C):
                    end = pos + 3
        if end < 0:
            q = pos + ln
            lead = c
            if cp == 0x20 and q < n:  # " ?" before a letter / number / other run
                cp1 = np.int64(data[q])  # ASCII inline: a call per character would halve the speed
                ln1 = 1
                if cp1 >= 0x80:
                    cp1, ln1 = _decode(data, q, n)
                t1 = table[cp1]
                if t1 & CLASS_MASK != SPACE and not t1 & stop:
                    lead = t1 & CLASS_MASK
                    q += ln1
            if lead != SPACE:
                end = _run(data, n, table, q, lead, stop)
            else:  # \s+(?!\S) | \s+
                end, _ = _space_tail(data, n, table, pos, q, stop, -1)
        out[k] = end
        k += 1
        pos = end
    return k, pos


@njit(cache=True)
def scan_cl100k(data, table, pos, out, k):
    """Boundaries of ``'(?i:[sdmt]|ll|ve|re)|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}++|\\p{N}{1,3}+|
    ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*+|\\s++$|\\s*[\\r\\n]|\\s+(?!\\S)|\\s``."""
    n = data.shape[0]
    while pos < n and k < out.shape[0]:
        cp = np.int64(data[pos])  # ASCII inline: a call per character would halve the speed
        ln = 1
        if cp >= 0x80:
            cp, ln = _decode(data, pos, n)
        t = table[cp]
        c = t & CLASS_MASK
        end = -1
        if cp == 0x27 and pos + 1 < n:  # case-insensitive; (?i)s also matches U+017F LATIN SMALL LETTER LONG S
            b1 = data[pos + 1] | 0x20
            if b1 == 0x73 or b1 == 0x74 or b1 == 0x6D or b1 == 0x64:
                end = pos + 2
            elif pos + 2 < n:
                b2 = data[pos + 2]
                if data[pos + 1] == 0xC5 and b2 == 0xBF:
                    end = pos + 3
                else:
                    b2 = b2 | 0x20
                    if (b1 == 0x72 and b2 == 0x65) or (b1 == 0x76 and b2 == 0x65) or (b1 == 0x6C and b2 == 0x6C):
                        end = pos + 3
        if end < 0:
            q = pos + ln
            if c == LETTER:
                end = _run(data, n, table, q, LETTER, 0)
            elif c == NUMBER:  # \p{N}{1,3}
                count = 1
                while count < 3 and q < n:
                    cpx = np.int64(data[q])  # ASCII inline: a call per character would halve the speed
                    lnx = 1
                    if cpx >= 0x80:
                        cpx, lnx = _decode(data, q, n)
                    if table[cpx] & CLASS_MASK != NUMBER:
                        break
                    q += lnx
                    count += 1
                end = q
            else:
                c1 = -1
                ln1 = 0
                if q < n:
                    cp1 = np.int64(data[q])  # ASCII inline: a call per character would halve the speed
                    ln1 = 1
                    if cp1 >= 0x80:
                        cp1, ln1 = _decode(data, q, n)
                    c1 = table[cp1] & CLASS_MASK
                if c1 == LETTER and not (t & CRLF):  # [^\r\n\p{L}\p{N}]?+\p{L}++
                    end = _run(data, n, table, q + ln1, LETTER, 0)
                elif c == OTHER or (cp == 0x20 and c1 == OTHER):  # ' ?[^\s\p{L}\p{N}]++[\r\n]*+'
                    if c != OTHER:
                        q += ln1
                    q = _run(data, n, table, q, OTHER, 0)
                    while q < n and table[data[q]] & CRLF:  # \r and \n are single bytes
                        q += 1
                    end = q
                else:  # white space at pos: \s++$ | \s*[\r\n] | \s+(?!\S) | \s
                    nl_end = -1
                    if t & CRLF:  # not a conditional expression among the arguments: Numba refcounts the arrays then
                        nl_end = pos + ln
                    end, nl_end = _space_tail(data, n, table, pos, q, 0, nl_end)
                    if end < n and nl_end > 0:  # the run stops before the end of the text: \s*[\r\n] comes first
                        end = nl_end  # through the run's last \r or \n
        out[k] = end
        k += 1
        pos = end
    return k, pos


@njit(cache=True)
def scan_whitespace(data, table, pos, out, k):
    """Boundaries of `` ?\\S+|\\s+(?!\\S)|\\s+``."""
    n = data.shape[0]
    while pos < n and k < out.shape[0]:
        cp = np.int64(data[pos])  # ASCII inline: a call per character would halve the speed
        ln = 1
        if cp >= 0x80:
            cp, ln = _decode(data, pos, n)
        c = table[cp] & CLASS_MASK
        q = pos + ln
        end = -1
        word = c != SPACE
        if cp == 0x20 and q < n:  # " ?\S+"
            cp1 = np.int64(data[q])
            if cp1 >= 0x80:
                cp1 = _decode(data, q, n)[0]
            word = table[cp1] & CLASS_MASK != SPACE
        if word:
            while q < n:
                cpx = np.int64(data[q])  # ASCII inline: a call per character would halve the speed
                lnx = 1
                if cpx >= 0x80:
                    cpx, lnx = _decode(data, q, n)
                if table[cpx] & CLASS_MASK == SPACE:
                    break
                q += lnx
            end = q
        else:  # \s+(?!\S) | \s+
            end, _ = _space_tail(data, n, table, pos, q, 0, -1)
        out[k] = end
        k += 1
        pos = end
    return k, pos


@njit(inline="always")
def _is_closer(cp):
    """Closing quotes and brackets that stay with a sentence end: ``" ' ) ] ’ ” »``."""
    return (cp == 0x22 or cp == 0x27 or cp == 0x29 or cp == 0x5D or cp == 0x2019 or cp == 0x201D
            or cp == 0xBB)


@njit(inline="always")
def _space_at(data, n, table, q):
    """True when the character at byte ``q`` (``q < n``) is white space."""
    cp = np.int64(data[q])
    if cp >= 0x80:
        cp = _decode(data, q, n)[0]
    return table[cp] & CLASS_MASK == SPACE


@njit(cache=True)
def scan_superword(data, table, pos, out, k):
    """Boundaries of ``(?:[^\\s.!?]|[.!?]+(?!C*\\s)| (?=\\S))+(?:[.!?]+C*)?|[.!?]+C*|\\s+(?!\\S)|\\s+`` where
    ``C`` is a closing quote or bracket (:func:`_is_closer`).

    A piece is a run of non-space characters and single spaces (each followed by a non-space); it ends before any
    other white space, or right after a sentence end: a run of ``.!?`` and closers followed by white space.
    Other white space is split as in ``whitespace`` (a run leaves its last character to what follows).
    """
    n = data.shape[0]
    while pos < n and k < out.shape[0]:
        cp = np.int64(data[pos])  # ASCII inline: a call per character would halve the speed
        ln = 1
        if cp >= 0x80:
            cp, ln = _decode(data, pos, n)
        words = table[cp] & CLASS_MASK != SPACE
        if cp == 0x20 and pos + 1 < n:  # a single space before a word starts a piece
            words = not _space_at(data, n, table, pos + 1)
        if words:
            q = pos
            end = n
            while q < n:
                cpx = np.int64(data[q])  # ASCII inline: a call per character would halve the speed
                lnx = 1
                if cpx >= 0x80:
                    cpx, lnx = _decode(data, q, n)
                if table[cpx] & CLASS_MASK == SPACE:
                    if cpx == 0x20 and q + 1 < n and not _space_at(data, n, table, q + 1):
                        q += 1  # a single space between words: the piece goes on
                        continue
                    end = q
                    break
                if cpx == 0x2E or cpx == 0x21 or cpx == 0x3F:  # . ! ?
                    r = q + 1
                    while r < n and (data[r] == 0x2E or data[r] == 0x21 or data[r] == 0x3F):
                        r += 1
                    s = r
                    while s < n:
                        cps = np.int64(data[s])
                        lns = 1
                        if cps >= 0x80:
                            cps, lns = _decode(data, s, n)
                        if not _is_closer(cps):
                            break
                        s += lns
                    if s < n and _space_at(data, n, table, s):
                        end = s  # a sentence end: the white space after it starts the next piece
                        break
                    q = r
                    continue
                q += lnx
        else:  # \s+(?!\S) | \s+
            end, _ = _space_tail(data, n, table, pos, pos + ln, 0, -1)
        out[k] = end
        k += 1
        pos = end
    return k, pos


SCANNER_CODES = {"gpt2": 0, "smollm2": 1, "gpt4": 2, "superword": 3, "whitespace": 4}


@njit(cache=True)
def scan_documents(arr, doc_ends, table, code, out, k, d):
    """Scan documents ``d, d + 1, ...`` of ``arr`` (document ``i`` is ``arr[doc_ends[i - 1]:doc_ends[i]]``, the first
    starting at 0) with scanner ``code`` (`SCANNER_CODES`), each on its own, writing absolute piece ends to
    ``out[k], ...``. Stops before a document that might not fit in ``out`` (a piece has at least one byte); returns
    the new ``(k, d)``."""
    n_docs = doc_ends.shape[0]
    while d < n_docs:
        s = 0 if d == 0 else doc_ends[d - 1]
        e = doc_ends[d]
        if k + (e - s) > out.shape[0]:
            return k, d
        view = arr[s:e]
        k0 = k
        if code <= 1:
            k, _ = scan_gpt2(view, table, code == 1, 0, out, k)
        elif code == 2:
            k, _ = scan_cl100k(view, table, 0, out, k)
        elif code == 3:
            k, _ = scan_superword(view, table, 0, out, k)
        else:
            k, _ = scan_whitespace(view, table, 0, out, k)
        for j in range(k0, k):
            out[j] += s
        d += 1
    return k, d

"""Renders a `tmux capture-pane -e -p` dump (text with ANSI colours) to a PNG.

    python scripts/screenshot_render.py CAPTURE.txt OUT.png COLUMNS ROWS
"""

import re
import sys

from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"
FONT_BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf"
BG = (24, 24, 27)
FG = (220, 220, 220)
# xterm's 16 colours.
BASIC = [(0, 0, 0), (205, 49, 49), (13, 188, 121), (229, 229, 16), (36, 114, 200), (188, 63, 188),
         (17, 168, 205), (229, 229, 229), (102, 102, 102), (241, 76, 76), (35, 209, 139), (245, 245, 67),
         (59, 142, 234), (214, 112, 214), (41, 184, 219), (255, 255, 255)]


def xterm256(n):
    if n < 16:
        return BASIC[n]
    if n < 232:
        n -= 16
        levels = [0, 95, 135, 175, 215, 255]
        return levels[n // 36], levels[(n // 6) % 6], levels[n % 6]
    v = 8 + 10 * (n - 232)
    return v, v, v


def parse(line):
    """Yields (char, fg, bg, bold) for one captured line."""
    fg, bg, bold, reverse = FG, BG, False, False
    for token in re.split(r"(\x1b\[[0-9;]*m)", line):
        if token.startswith("\x1b["):
            codes = [int(c) if c else 0 for c in token[2:-1].split(";")]
            i = 0
            while i < len(codes):
                c = codes[i]
                if c == 0:
                    fg, bg, bold, reverse = FG, BG, False, False
                elif c == 1:
                    bold = True
                elif c == 22:
                    bold = False
                elif c == 7:
                    reverse = True
                elif c == 27:
                    reverse = False
                elif 30 <= c <= 37:
                    fg = BASIC[c - 30]
                elif 90 <= c <= 97:
                    fg = BASIC[c - 90 + 8]
                elif 40 <= c <= 47:
                    bg = BASIC[c - 40]
                elif 100 <= c <= 107:
                    bg = BASIC[c - 100 + 8]
                elif c == 39:
                    fg = FG
                elif c == 49:
                    bg = BG
                elif c in (38, 48) and i + 1 < len(codes):
                    if codes[i + 1] == 5 and i + 2 < len(codes):
                        color = xterm256(codes[i + 2])
                        i += 2
                    elif codes[i + 1] == 2 and i + 4 < len(codes):
                        color = tuple(codes[i + 2:i + 5])
                        i += 4
                    else:
                        color = FG if c == 38 else BG
                    if c == 38:
                        fg = color
                    else:
                        bg = color
                i += 1
            continue
        for ch in token:
            yield (ch, bg if reverse else fg, fg if reverse else bg, bold)


def main():
    capture, out, cols, rows = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    font, bold_font = ImageFont.truetype(FONT, 15), ImageFont.truetype(FONT_BOLD, 15)
    cw = int(font.getlength("M"))
    ch = 19
    pad = 12
    img = Image.new("RGB", (cols * cw + 2 * pad, rows * ch + 2 * pad), BG)
    draw = ImageDraw.Draw(img)
    lines = open(capture, encoding="utf-8").read().split("\n")[:rows]
    for y, line in enumerate(lines):
        for x, (c, fg, bg, bold) in enumerate(parse(line)):
            if x >= cols:
                break
            px, py = pad + x * cw, pad + y * ch
            if bg != BG:
                draw.rectangle([px, py, px + cw - 1, py + ch - 1], fill=bg)
            if c != " ":
                draw.text((px, py + 1), c, fill=fg, font=bold_font if bold else font)
    img.save(out)


if __name__ == "__main__":
    main()

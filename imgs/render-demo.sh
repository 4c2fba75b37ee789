#!/usr/bin/env bash
# Regenerates imgs/demo.png: a real session of the interactive client against a running
# server, typed into tmux with send-keys, captured with capture-pane and drawn with Python PIL
# (DejaVu Sans Mono, dark background; ANSI colours are kept if there are any).
#
# Needs: tmux, python3 with pillow (pip install pillow), fonts-dejavu-core.
# Usage: imgs/render-demo.sh            (from anywhere; uses port 8888, which must be free)
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
port=8888
cols=92
rows=31
session=toykv-demo-$$
work=$(mktemp -d)
server_pid=

cleanup() {
    tmux kill-session -t "$session" 2>/dev/null || true
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

cargo build -q --release --example server --example client
cargo build -q --example client # what `cargo run -q --example client` in the pane runs

if target/release/examples/client "127.0.0.1:$port" ping >/dev/null 2>&1; then
    echo "something already answers on port $port; stop it first" >&2
    exit 1
fi
target/release/examples/server --port "$port" --dir "$work/data" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 50); do
    target/release/examples/client "127.0.0.1:$port" ping >/dev/null 2>&1 && break
    sleep 0.1
done

# A clean shell: short prompt, history in the scratch directory.
# HOME moves; cargo and rustup are told where they live.
tmux new-session -d -s "$session" -x "$cols" -y "$rows" -c "$root" \
    "env -i PATH=$PATH HOME=$work TERM=xterm-256color PS1='\$ ' \
    CARGO_HOME=${CARGO_HOME:-$HOME/.cargo} RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup} \
    ${CARGO_TARGET_DIR:+CARGO_TARGET_DIR=$CARGO_TARGET_DIR} bash --norc --noprofile"
sleep 0.5

type_line() {
    tmux send-keys -t "$session" -l "$1"
    sleep 0.2
    tmux send-keys -t "$session" Enter
    sleep "${2:-0.4}"
}

type_line "cargo run -q --example client" 2
type_line "put user:1 alice"
type_line 'put user:2 "Bob Smith"'
type_line "get user:1"
type_line 'put blob "\x00\x01\xfe\xff"'
type_line "get blob"
type_line "get nobody"
type_line "scan"
type_line "scan user:1 user:9 1"
type_line "info keyspace"
type_line "frobnicate 42"
type_line "del user:2 nobody"
tmux send-keys -t "$session" C-d
sleep 0.5

tmux capture-pane -t "$session" -p -e >"$work/pane.txt"

python3 - "$work/pane.txt" imgs/demo.png <<'EOF'
"""Draws a tmux capture (text with ANSI SGR codes) as a terminal screenshot."""
import re
import sys

from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"
BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf"
SIZE, PAD = 15, 14
BG, FG = (30, 30, 30), (212, 212, 212)
PALETTE = [
    (0, 0, 0), (205, 49, 49), (13, 188, 121), (229, 229, 16),
    (36, 114, 200), (188, 63, 188), (17, 168, 205), (229, 229, 229),
    (102, 102, 102), (241, 76, 76), (35, 209, 139), (245, 245, 67),
    (59, 142, 234), (214, 112, 214), (41, 184, 219), (255, 255, 255),
]


def xterm(n):
    """The colour of xterm-256 index n."""
    if n < 16:
        return PALETTE[n]
    if n < 232:
        n -= 16
        steps = [0, 95, 135, 175, 215, 255]
        return (steps[n // 36], steps[n // 6 % 6], steps[n % 6])
    v = 8 + (n - 232) * 10
    return (v, v, v)


def spans(line):
    """(text, fg, bg, bold) pieces of one captured line."""
    fg, bg, bold = FG, None, False
    out = []
    for part in re.split(r"(\x1b\[[0-9;]*m)", line):
        if not part.startswith("\x1b["):
            if part:
                out.append((part, fg, bg, bold))
            continue
        codes = [int(c) if c else 0 for c in part[2:-1].split(";")]
        i = 0
        while i < len(codes):
            c = codes[i]
            if c == 0:
                fg, bg, bold = FG, None, False
            elif c == 1:
                bold = True
            elif c == 22:
                bold = False
            elif 30 <= c <= 37:
                fg = PALETTE[c - 30]
            elif 90 <= c <= 97:
                fg = PALETTE[c - 90 + 8]
            elif c == 39:
                fg = FG
            elif 40 <= c <= 47:
                bg = PALETTE[c - 40]
            elif c == 49:
                bg = None
            elif c in (38, 48) and i + 2 < len(codes) and codes[i + 1] == 5:
                if c == 38:
                    fg = xterm(codes[i + 2])
                else:
                    bg = xterm(codes[i + 2])
                i += 2
            i += 1
    return out


src, dst = sys.argv[1], sys.argv[2]
lines = open(src, encoding="utf-8").read().rstrip("\n").split("\n")
while lines and not re.sub(r"\x1b\[[0-9;]*m", "", lines[-1]).strip():
    lines.pop()
regular, bold = ImageFont.truetype(FONT, SIZE), ImageFont.truetype(BOLD, SIZE)
cell_w = regular.getlength("M")
cell_h = int(SIZE * 1.35)
width = max(len(re.sub(r"\x1b\[[0-9;]*m", "", l)) for l in lines)
img = Image.new("RGB", (int(cell_w * max(width, 80)) + 2 * PAD, cell_h * len(lines) + 2 * PAD), BG)
draw = ImageDraw.Draw(img)
for row, line in enumerate(lines):
    col = 0
    y = PAD + row * cell_h
    for text, fg, bg, is_bold in spans(line):
        x = PAD + col * cell_w
        if bg:
            draw.rectangle([x, y, x + len(text) * cell_w, y + cell_h], fill=bg)
        for i, ch in enumerate(text):
            draw.text((x + i * cell_w, y + 2), ch, font=bold if is_bold else regular, fill=fg)
        col += len(text)
img = img.quantize(colors=64)
img.save(dst, optimize=True)
print(f"{dst}: {img.size[0]}x{img.size[1]}, {len(lines)} lines")
EOF

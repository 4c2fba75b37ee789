"""Reads a Dockerfile's final stage and prints it as shell assignments for .ci/container.sh.

Usage: dockerfile.py DOCKERFILE
Prints (each value quoted for `eval`):
  DF_ENV=(K=V ...)            the final stage's ENV, in order
  DF_ENTRYPOINT=(...) DF_CMD=(...)   exec-form arrays (shell form is refused)
  DF_HEALTHCHECK=(...)        the HEALTHCHECK CMD, as an exec-form array
  DF_COPY=(SRC DST ...)       COPY --from=<stage> pairs, SRC made relative to that stage's WORKDIR
  DF_USER= DF_EXPOSE=(...) DF_VOLUME=(...) DF_FROM=
Only what this project's Dockerfile uses is understood; anything else makes it fail loudly.
"""

import json
import shlex
import sys


def instructions(text):
    """(KEYWORD, argument text) per instruction: comments dropped, continuations joined."""
    out, cur = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not cur and (not stripped or stripped.startswith("#")):
            continue
        if cur and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            cur += stripped[:-1] + " "
            continue
        cur += stripped
        word, _, rest = cur.partition(" ")
        out.append((word.upper(), rest.strip()))
        cur = ""
    if cur:
        sys.exit(f"dockerfile.py: unterminated continuation: {cur!r}")
    return out


def exec_form(what, arg):
    try:
        v = json.loads(arg)
    except json.JSONDecodeError:
        sys.exit(f"dockerfile.py: {what} is not in exec (JSON array) form: {arg!r}")
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        sys.exit(f"dockerfile.py: {what} is not a JSON array of strings: {arg!r}")
    return v


def main():
    stages = []  # each: dict(name, from, workdir, ins=[...])
    for kw, arg in instructions(open(sys.argv[1]).read()):
        if kw == "FROM":
            words = arg.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append({"name": name, "from": words[0], "workdir": "/", "ins": []})
        elif not stages:
            if kw != "ARG":
                sys.exit(f"dockerfile.py: {kw} before FROM")
        else:
            st = stages[-1]
            if kw == "WORKDIR":
                st["workdir"] = arg if arg.startswith("/") else st["workdir"].rstrip("/") + "/" + arg
            st["ins"].append((kw, arg))
    by_name = {s["name"]: s for s in stages if s["name"]}
    final = stages[-1]
    env, entry, cmd, hc, copies, user, expose, volume = [], None, [], None, [], "", [], []
    for kw, arg in final["ins"]:
        if kw == "ENV":
            words = shlex.split(arg)
            if words and "=" not in words[0]:
                sys.exit(f"dockerfile.py: use ENV K=V, not the legacy form: {arg!r}")
            env += words
        elif kw == "ENTRYPOINT":
            entry = exec_form("ENTRYPOINT", arg)
        elif kw == "CMD":
            cmd = exec_form("CMD", arg)
        elif kw == "HEALTHCHECK":
            words = arg.split(" ")
            while words and words[0].startswith("--"):
                words.pop(0)
            rest = " ".join(words).strip()
            if not rest.upper().startswith("CMD "):
                sys.exit(f"dockerfile.py: HEALTHCHECK without CMD: {arg!r}")
            hc = exec_form("HEALTHCHECK CMD", rest[4:].strip())
        elif kw == "COPY" and arg.startswith("--from="):
            words = arg.split()
            src_stage = by_name.get(words[0][len("--from="):])
            if src_stage is None or len(words) != 3:
                sys.exit(f"dockerfile.py: unsupported COPY: {arg!r}")
            src, dst = words[1], words[2]
            wd = src_stage["workdir"].rstrip("/") + "/"
            if not src.startswith(wd):
                sys.exit(f"dockerfile.py: COPY source {src} is outside the build WORKDIR {wd}")
            copies += [src[len(wd):], dst]
        elif kw == "USER":
            user = arg
        elif kw == "EXPOSE":
            expose += arg.split()
        elif kw == "VOLUME":
            volume += exec_form("VOLUME", arg) if arg.startswith("[") else arg.split()
    if entry is None:
        sys.exit("dockerfile.py: the final stage has no ENTRYPOINT")
    if hc is None:
        sys.exit("dockerfile.py: the final stage has no HEALTHCHECK")

    def arr(name, items):
        print(f"{name}=(" + " ".join(shlex.quote(x) for x in items) + ")")

    arr("DF_ENV", env)
    arr("DF_ENTRYPOINT", entry)
    arr("DF_CMD", cmd)
    arr("DF_HEALTHCHECK", hc)
    arr("DF_COPY", copies)
    arr("DF_EXPOSE", expose)
    arr("DF_VOLUME", volume)
    print(f"DF_USER={shlex.quote(user)}")
    print(f"DF_FROM={shlex.quote(final['from'])}")


if __name__ == "__main__":
    main()

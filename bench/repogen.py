"""The benchmark's repository: a deterministic docs-site tree built with `git fast-import`.

Owns the layout (sections of markdown pages, rendered HTML, CSS/JS/YAML and
about 2% images of pseudo-random bytes), every file's content as a pure
function of (seed, path, revision), the generated history (files added over a
few hundred commits, a few edits in each, the last commit holding the full
tree), the cache of generated repositories, and appending benchmark commits
that change N files of the current tree.
"""

import json
import math
import os
import random
import shutil
import subprocess

from procs import output

# Bump when the generator changes, so cached repositories are regenerated.
GENERATOR_VERSION = 1
IMAGE_SHARE = 0.02
EDITS_PER_COMMIT = 12
BASE_TIME = 1700000000
AUTHOR = "Bench <bench@example.invalid>"

WORDS = (
    "the of and to in is for on with as by that this be are from at or an it not "
    "configure install server client request response cache header proxy upstream "
    "deploy release version branch commit worktree symlink volume container pod "
    "service ingress route handler metric latency throughput error timeout retry "
    "option default value example section guide reference tutorial overview note "
    "warning tip see also returns accepts string integer boolean list map object "
    "field parameter argument command flag environment variable path file directory "
    "user group permission secret token webhook signature payload event push pull"
).split()


def git_env(home):
    """Environment for harness git commands: no user or system config leaks in."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_TERMINAL_PROMPT": "0",
        "LC_ALL": "C",
    }
    config = [
        ("init.defaultBranch", "main"),
        ("gc.auto", "0"),
        ("advice.detachedHead", "false"),
        ("safe.directory", "*"),
    ]
    env["GIT_CONFIG_COUNT"] = str(len(config))
    for i, (k, v) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{i}"] = k
        env[f"GIT_CONFIG_VALUE_{i}"] = v
    return env


class Content:
    """File contents as a pure function of (seed, path, revision)."""

    def __init__(self, seed):
        self.seed = seed
        rng = random.Random(f"{seed}:sentences")
        self.sentences = [self._sentence(rng) for _ in range(4000)]

    @staticmethod
    def _sentence(rng):
        words = rng.choices(WORDS, k=rng.randint(6, 18))
        return " ".join(words).capitalize() + "."

    def blob(self, path, kind, revision):
        rng = random.Random(f"{self.seed}:{path}")
        if kind == "img":
            data = bytearray(_image(rng))
            if revision:
                # An edited image: a few bytes rewritten in place.
                edit = random.Random(f"{self.seed}:{path}:{revision}")
                pos = edit.randrange(16, len(data) - 16)
                data[pos : pos + 16] = edit.randbytes(16)
            return bytes(data)
        text = self._text(rng, path, kind)
        if revision:
            text += _revision_note(kind, revision)
        return text.encode()

    def _text(self, rng, path, kind):
        size = int(math.exp(rng.uniform(math.log(1000), math.log(20000))))
        picks = rng.choices(self.sentences, k=size // 60 + 1)
        title = path.rsplit("/", 1)[-1].split(".")[0].replace("-", " ")
        return _wrap(kind, title, picks)[:size] + "\n"


def _image(rng):
    size = int(math.exp(rng.uniform(math.log(20_000), math.log(300_000))))
    return b"\x89PNG\r\n\x1a\n" + rng.randbytes(size - 8)


def _revision_note(kind, revision):
    if kind in ("md", "html"):
        return f"<!-- revision {revision} -->\n"
    if kind in ("css", "js"):
        return f"/* revision {revision} */\n"
    return f"# revision {revision}\n"


def _wrap(kind, title, sentences):
    paras = [" ".join(sentences[i : i + 5]) for i in range(0, len(sentences), 5)]
    if kind == "md":
        body = "\n\n".join(f"## {p[:40]}\n\n{p}" if i % 4 == 0 else p for i, p in enumerate(paras))
        return f"---\ntitle: {title}\nweight: {len(title)}\n---\n\n# {title}\n\n{body}"
    if kind == "html":
        body = "\n".join(f"<p>{p}</p>" for p in paras)
        return (
            f"<!doctype html>\n<html><head><meta charset=utf-8><title>{title}</title>"
            f'<link rel=stylesheet href="/css/site.css"></head>\n<body><main>\n<h1>{title}</h1>\n{body}'
        )
    if kind == "css":
        rules = (f".{w.split()[0].lower()}-{i} {{ margin: {i % 9}px; /* {w} */ }}" for i, w in enumerate(paras))
        return "\n".join(rules)
    if kind == "js":
        funcs = (f"export function f{i}() {{\n  // {w}\n  return {i};\n}}" for i, w in enumerate(paras))
        return "\n".join(funcs)
    return "\n".join(f"item{i}: {p!r}" for i, p in enumerate(paras))


def layout(files, seed):
    """Sorted list of (path, kind) for a docs site of about `files` files."""
    rng = random.Random(f"{seed}:layout")
    n_img = round(files * IMAGE_SHARE)
    n_text = files - n_img
    shares = [("md", "content", ".md", 0.50), ("html", "public", ".html", 0.38),
              ("css", "static/css", ".css", 0.04), ("js", "static/js", ".js", 0.04),
              ("yaml", "data", ".yaml", 0.04)]
    sections = _names(rng, max(4, files // 2000))
    subsections = _names(rng, 10)
    entries = []
    for kind, top, ext, share in shares:
        count = round(n_text * share) if kind != "yaml" else n_text - len(entries)
        entries += _spread(rng, kind, top, ext, count, sections, subsections)
    entries += _spread(rng, "img", "static/img", ".png", n_img, sections, subsections)
    return sorted(set(entries))


def _names(rng, n):
    names = set()
    while len(names) < n:
        names.add(f"{rng.choice(WORDS)}-{rng.choice(WORDS)}")
    return sorted(names)


def _spread(rng, kind, top, ext, count, sections, subsections):
    out = []
    for i in range(count):
        sec = sections[i % len(sections)]
        sub = subsections[(i // len(sections)) % len(subsections)]
        out.append((f"{top}/{sec}/{sub}/{rng.choice(WORDS)}-{i}{ext}", kind))
    return out


class FastImport:
    """A `git fast-import` process writing commits on refs/heads/main."""

    def __init__(self, git_dir, env):
        self.proc = subprocess.Popen(
            ["git", "--git-dir", str(git_dir), "fast-import", "--quiet", "--done"],
            stdin=subprocess.PIPE, env=env,
        )
        self.out = self.proc.stdin

    def commit(self, when, message, changes, parent=None):
        """`changes` yields (path, bytes); `parent` is a sha (None: continue the branch)."""
        w = self.out.write
        msg = message.encode()
        w(f"commit refs/heads/main\nauthor {AUTHOR} {when} +0000\ncommitter {AUTHOR} {when} +0000\n".encode())
        w(b"data %d\n%s\n" % (len(msg), msg))
        if parent:
            w(f"from {parent}\n".encode())
        for path, data in changes:
            w(f"M 100644 inline {path}\ndata {len(data)}\n".encode())
            w(data)
            w(b"\n")

    def close(self):
        self.out.write(b"done\n")
        self.out.close()
        if self.proc.wait() != 0:
            raise RuntimeError("git fast-import failed")


class Generated:
    """A cached generated repository: bare git dir plus the state of its tip."""

    def __init__(self, cache_dir, files, commits, seed):
        self.files, self.commits, self.seed = files, commits, seed
        self.dir = cache_dir / f"repo-f{files}-c{commits}-s{seed}-g{GENERATOR_VERSION}"
        self.git_dir = self.dir / "repo.git"
        self.state_file = self.dir / "state.json"

    def ensure(self, home, log):
        """Generates the repository unless a complete one is cached."""
        if self.state_file.exists():
            log(f"reusing generated repository {self.git_dir}")
            return self.load()
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        log(f"generating {self.files} files over {self.commits} commits into {self.git_dir} ...")
        env = git_env(home)
        output(["git", "init", "-q", "--bare", str(self.git_dir)], env=env)
        state = self._write_history(env)
        tip = output(["git", "--git-dir", str(self.git_dir), "rev-parse", "refs/heads/main"], env=env)
        data = {"tip": tip, "files": state, "commits": self.commits}
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.rename(self.state_file)
        return data

    def load(self):
        return json.loads(self.state_file.read_text())

    def make_content(self):
        return Content(self.seed)

    def _write_history(self, env):
        content = Content(self.seed)
        entries = layout(self.files, self.seed)
        rng = random.Random(f"{self.seed}:history")
        adding = max(1, int(self.commits * 0.9))
        chunks = [entries[i::adding] for i in range(adding)]
        state = {}  # path -> [kind, revision]
        fi = FastImport(self.git_dir, env)
        for n in range(self.commits):
            changes = []
            edited = rng.sample(sorted(state), min(EDITS_PER_COMMIT, len(state))) if state else []
            for path in edited:
                state[path][1] += 1
                changes.append(path)
            for path, kind in chunks[n] if n < adding else []:
                state[path] = [kind, 0]
                changes.append(path)
            blobs = ((p, content.blob(p, state[p][0], state[p][1])) for p in changes)
            fi.commit(BASE_TIME + n * 3600, f"Docs update {n + 1}", blobs)
        fi.close()
        return state


class DocContent:
    """Markdown pages of a documentation repository, as a pure function of
    (seed, path, revision): revision r is revision r-1 with one paragraph
    rewritten, so successive versions delta well against each other."""

    def __init__(self, seed):
        self.seed = seed
        rng = random.Random(f"{seed}:doc-sentences")
        self.sentences = [Content._sentence(rng) for _ in range(3000)]

    def blob(self, path, kind, revision):
        rng = random.Random(f"{self.seed}:{path}")
        size = int(math.exp(rng.uniform(math.log(400), math.log(9000))))
        picks = rng.choices(self.sentences, k=size // 60 + 1)
        paras = [" ".join(picks[i : i + 4]) for i in range(0, len(picks), 4)]
        for r in range(1, revision + 1):
            edit = random.Random(f"{self.seed}:{path}:{r}")
            at = edit.randrange(len(paras))
            if edit.random() < 0.25:
                paras.insert(at, " ".join(edit.choices(self.sentences, k=edit.randint(1, 4))))
            else:
                paras[at] = " ".join(edit.choices(self.sentences, k=edit.randint(2, 5)))
        title = path.rsplit("/", 1)[-1].split(".")[0].replace("-", " ")
        body = "\n\n".join(f"## {p[:40]}\n\n{p}" if i % 5 == 0 else p for i, p in enumerate(paras))
        return f"---\ntitle: {title}\n---\n\n# {title}\n\n{body}\n".encode()


class DocsGenerated(Generated):
    """A realistic documentation repository: `files` small markdown pages
    (0.4-9 KB) in about files/120 directories (a few hundred for tens of
    thousands of files, two or three levels deep), and a long history:
    the pages are added over the first tenth of the commits, then every
    commit edits 1-4 pages (one paragraph each) and sometimes adds one.
    Packed afterwards with `git repack -adf --depth=50 --window=10`, so the
    served pack holds delta chains as a real repository's does."""

    KIND = "docs"

    def __init__(self, cache_dir, files, commits, seed):
        super().__init__(cache_dir, files, commits, seed)
        self.dir = cache_dir / f"docs-f{files}-c{commits}-s{seed}-g{GENERATOR_VERSION}"
        self.git_dir = self.dir / "repo.git"
        self.state_file = self.dir / "state.json"

    def make_content(self):
        return DocContent(self.seed)

    def _layout(self, rng):
        tops = _names(rng, max(3, self.files // 4000))
        dirs = []
        for top in tops:
            for sub in _names(random.Random(f"{self.seed}:{top}"), max(2, self.files // 120 // len(tops))):
                dirs.append(f"docs/{top}/{sub}")
        return [f"{dirs[i % len(dirs)]}/{rng.choice(WORDS)}-{rng.choice(WORDS)}-{i}.md" for i in range(self.files)]

    def _write_history(self, env):
        content = self.make_content()
        rng = random.Random(f"{self.seed}:docs-history")
        pages = self._layout(rng)
        adding = max(1, self.commits // 10)
        chunks = [pages[i::adding] for i in range(adding)]
        state = {}  # path -> [kind, revision]
        keys = []  # the pages so far, in the order they were added
        fi = FastImport(self.git_dir, env)
        for n in range(self.commits):
            if n < adding:
                changes = chunks[n]
                for path in changes:
                    state[path] = ["doc", 0]
                keys += changes
            else:
                changes = rng.sample(keys, rng.randint(1, 4))
                for path in changes:
                    state[path][1] += 1
                if rng.random() < 0.05:
                    path = f"{rng.choice(keys).rsplit('/', 1)[0]}/new-page-{n}.md"
                    state[path] = ["doc", 0]
                    keys.append(path)
                    changes = [*changes, path]
            blobs = ((p, content.blob(p, "doc", state[p][1])) for p in changes)
            fi.commit(BASE_TIME + n * 1800, f"docs: update {n + 1}", blobs)
        fi.close()
        output(["git", "--git-dir", str(self.git_dir), "repack", "-a", "-d", "-f", "-q", "--depth=50",
                "--window=10"], env=env)
        return state


class Upstream:
    """The repository served to the clients: a shared clone of a generated one.

    New commits go into the clone only (the generated cache stays pristine).
    """

    def __init__(self, generated, path, home):
        self.generated = generated
        self.path = path
        self.env = git_env(home)
        self.content = generated.make_content()
        self.counter = 0
        self.reset()

    def reset(self):
        """A fresh shared clone of the generated repository at its tip."""
        data = self.generated.load()
        if self.path.exists():
            shutil.rmtree(self.path)
        output(["git", "clone", "-q", "--bare", "--shared", str(self.generated.git_dir), str(self.path)], env=self.env)
        self.state = {p: list(v) for p, v in data["files"].items()}
        self.tip = data["tip"]

    def file_count(self):
        return len(self.state)

    def commit_changes(self, count, label):
        """Appends a commit changing `count` files (a new revision of each); returns its sha."""
        self.counter += 1
        rng = random.Random(f"{self.generated.seed}:bench:{label}:{self.counter}")
        paths = rng.sample(sorted(self.state), min(count, len(self.state)))
        for p in paths:
            self.state[p][1] += 1
        blobs = ((p, self.content.blob(p, self.state[p][0], self.state[p][1])) for p in paths)
        fi = FastImport(self.path, self.env)
        when = BASE_TIME + 10_000_000 + self.counter * 60
        fi.commit(when, f"Bench: {label} #{self.counter} changes {len(paths)} files", blobs, parent=self.tip)
        fi.close()
        self.tip = output(["git", "--git-dir", str(self.path), "rev-parse", "refs/heads/main"], env=self.env)
        return self.tip


MONO_CONE = "services/web"
MONO_BIG_BLOBS = 8
MONO_BIG_SIZE = 4 * 1024 * 1024


def make_monorepo(path, home, files, cone_files, seed):
    """A monorepo-shaped bare repository at `path`, built afresh (one commit):
    `files` small files under `services/svc-<n>/`, `cone_files` of them under
    `MONO_CONE` (the sparse cone), and `MONO_BIG_BLOBS` incompressible blobs
    of `MONO_BIG_SIZE` bytes under `assets/`, outside the cone. Serves
    filters and fetches by id, as a forge does. Returns the tip's sha.
    """
    env = git_env(home)
    if path.exists():
        shutil.rmtree(path)
    output(["git", "init", "-q", "--bare", str(path)], env=env)
    for key in ("uploadpack.allowFilter", "uploadpack.allowAnySHA1InWant"):
        output(["git", "--git-dir", str(path), "config", key, "true"], env=env)
    content = Content(seed)
    rng = random.Random(f"{seed}:mono")

    def changes():
        for i in range(cone_files):
            p = f"{MONO_CONE}/src/{rng.choice(WORDS)}-{i}.md"
            yield p, content.blob(p, "md", 0)
        for i in range(files - cone_files):
            p = f"services/svc-{i % 97}/m{i % 13}/{rng.choice(WORDS)}-{i}.md"
            yield p, content.blob(p, "md", 0)
        for i in range(MONO_BIG_BLOBS):
            yield f"assets/blob-{i}.bin", rng.randbytes(MONO_BIG_SIZE)

    fi = FastImport(path, env)
    fi.commit(BASE_TIME, "Monorepo", changes())
    fi.close()
    return output(["git", "--git-dir", str(path), "rev-parse", "refs/heads/main"], env=env)

"""A strict parser of the Prometheus text exposition format 0.0.4, for
test_metrics.py: every line must be a # HELP, a # TYPE or a sample; a
family's TYPE comes once, before its samples, and its samples are together;
names, label names, escapes and values follow the format's grammar; no
series twice; a histogram has _bucket series with le ending at +Inf and
cumulative counts, then _sum and _count (= the +Inf bucket). Raises
ValueError naming the line; returns {family: {"type", "help", "samples":
[(name, labels dict, value)]}}.
"""
import math
import re

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
FLOAT = r"[+-]?(?:Inf|NaN|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
HELP_RE = re.compile(r"# HELP (%s) ((?:[^\\\n]|\\\\|\\n)*)$" % NAME)
TYPE_RE = re.compile(r"# TYPE (%s) (counter|gauge|histogram|summary|untyped)$" % NAME)
SAMPLE_RE = re.compile(r"(%s)(\{[^\n]*\})? (%s)(?: (-?\d+))?$" % (NAME, FLOAT))
PAIR_RE = re.compile(r'(%s)="((?:[^"\\\n]|\\\\|\\"|\\n)*)"' % LABEL)
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count")}


def _labels(text, where):
    if text is None:
        return {}
    body = text[1:-1]
    out, pos = {}, 0
    while pos < len(body):
        m = PAIR_RE.match(body, pos)
        if not m:
            raise ValueError("%s: bad label at %r" % (where, body[pos:]))
        name = m.group(1)
        if name in out:
            raise ValueError("%s: label %s twice" % (where, name))
        out[name] = m.group(2).replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
        pos = m.end()
        if pos < len(body):
            if body[pos] != ",":
                raise ValueError("%s: expected ',' at %r" % (where, body[pos:]))
            pos += 1
            if pos == len(body):
                raise ValueError("%s: trailing comma" % where)
    return out


def _family_of(name, families, current):
    """The family a sample name belongs to: the one being read."""
    if current is None:
        return name
    kind = families[current]["type"]
    for suf in SUFFIXES.get(kind, ("",)):
        if name == current + suf:
            return current
    return name


def _check_histogram(fam, samples, where):
    groups = {}
    for name, labels, value in samples:
        key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        g = groups.setdefault(key, {"buckets": [], "sum": None, "count": None})
        if name == fam + "_bucket":
            if "le" not in labels:
                raise ValueError("%s: %s without le" % (where, name))
            g["buckets"].append((float(labels["le"]), value))
        elif name == fam + "_sum":
            g["sum"] = value
        elif name == fam + "_count":
            g["count"] = value
        else:
            raise ValueError("%s: %s is not a sample of histogram %s" % (where, name, fam))
    for key, g in groups.items():
        b = g["buckets"]
        if not b or b[-1][0] != math.inf:
            raise ValueError("%s: histogram %s%s lacks le=\"+Inf\" last" % (where, fam, key))
        for (le0, c0), (le1, c1) in zip(b, b[1:]):
            if not le1 > le0 or c1 < c0:
                raise ValueError("%s: histogram %s%s buckets not increasing/cumulative" % (where, fam, key))
        if g["sum"] is None or g["count"] is None or g["count"] != b[-1][1]:
            raise ValueError("%s: histogram %s%s needs _sum and _count = +Inf bucket" % (where, fam, key))


def parse(text):
    if not text.endswith("\n"):
        raise ValueError("the text must end with a newline")
    families, order, seen_series = {}, [], set()
    current = None
    for no, line in enumerate(text[:-1].split("\n"), 1):
        where = "line %d (%r)" % (no, line)
        if line.startswith("#"):
            m = HELP_RE.match(line) or TYPE_RE.match(line)
            if not m:
                raise ValueError("%s: a comment that is neither HELP nor TYPE" % where)
            name = m.group(1)
            f = families.get(name)
            if f is None:
                f = families[name] = {"type": None, "help": None, "samples": []}
                order.append(name)
            elif name != current:
                raise ValueError("%s: family %s seen before, apart" % (where, name))
            if line.startswith("# HELP"):
                if f["help"] is not None:
                    raise ValueError("%s: second HELP" % where)
                f["help"] = m.group(2)
            else:
                if f["type"] is not None or f["samples"]:
                    raise ValueError("%s: TYPE twice, or after samples" % where)
                f["type"] = m.group(2)
            current = name
            continue
        m = SAMPLE_RE.match(line)
        if not m:
            raise ValueError("%s: not a sample line" % where)
        name, labels = m.group(1), _labels(m.group(2), where)
        value = float(m.group(3))
        fam = _family_of(name, families, current)
        if fam != current:
            if fam in families:
                raise ValueError("%s: samples of %s apart" % (where, fam))
            families[fam] = {"type": "untyped", "help": None, "samples": []}
            order.append(fam)
            current = fam
        f = families[fam]
        if f["type"] is None:
            f["type"] = "untyped"
        key = (name, tuple(sorted(labels.items())))
        if key in seen_series:
            raise ValueError("%s: series twice" % where)
        seen_series.add(key)
        if f["type"] == "counter" and (value < 0 or math.isnan(value)):
            raise ValueError("%s: a counter below 0" % where)
        f["samples"].append((name, labels, value))
    for fam in order:
        if families[fam]["type"] == "histogram":
            _check_histogram(fam, families[fam]["samples"], fam)
    return families


def value(families, name, **labels):
    """The value of series name{labels} (0 when absent)."""
    for f in families.values():
        for n, l, v in f["samples"]:
            if n == name and l == labels:
                return v
    return 0.0

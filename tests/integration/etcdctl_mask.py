"""Masks the parts of etcdctl output that legitimately differ between two
servers, so the rest can be compared byte for byte.

What differs between two fresh single-member clusters even when both behave
identically: member and cluster IDs, lease IDs, ports and temp paths, raft
terms and indexes, db sizes, timings, server version strings and KV hashes.
Revisions are masked too unless strict_revisions is set (two fresh clusters
fed the same commands should agree on them, so strict mode is a stronger
check; see test_etcdctl_compare.py).

IDs, ports and paths are replaced by labels that keep their identity
(e.g. "<member:m0>", "<lease#2>", "<client:m0>"), so "the leader is m0" or
"key k is attached to the second lease" still compares. Every other field is
masked by name, per output format:

  simple    command-specific (endpoint status/hashkv columns, "compacted
            revision N", "remaining(Ns)", "took = ...", "progress notify: N")
  json      one JSON document per line, masked by key name
  fields    lines '"Name" : value', masked by name
  table     cells masked by column header
  protobuf  decoded with a small schema of etcd's response messages and
            masked by field name (etcdctl prints raw protobuf bytes)
  stderr    clientv3's zap JSON log lines (ts, target, took, size), "took"
"""

import json
import re

# ------------------------------------------------------------ identities


class Identities:
    """Values that identify things on one side, and their labels."""

    def __init__(self):
        self.ids = {}      # int -> label
        self.ports = {}    # int -> label
        self.paths = {}    # str -> label
        self.leases = []   # lease IDs in grant order
        self._regex = None

    def add_id(self, value, label):
        self.ids[int(value)] = label
        self._regex = None

    def add_lease(self, value):
        value = int(value)
        if value not in self.ids:
            self.leases.append(value)
            self.add_id(value, "<lease#%d>" % len(self.leases))
        return self.ids[value]

    def add_port(self, port, label):
        self.ports[int(port)] = label

    def add_path(self, path, label):
        self.paths[path] = label

    def _id_regex(self):
        if self._regex is None:
            forms = {}
            for v, label in self.ids.items():
                if v == 0:
                    continue
                forms[str(v)] = label
                forms["%x" % v] = label
                forms["%016x" % v] = label
            if forms:
                alts = sorted(forms, key=len, reverse=True)
                self._regex = (re.compile(
                    r"(?<![0-9A-Za-z])(" + "|".join(map(re.escape, alts)) +
                    r")(?![0-9A-Za-z])"), forms)
            else:
                self._regex = (None, {})
        return self._regex

    def text(self, s):
        """Substitutes paths, ports and IDs in free text."""
        for path in sorted(self.paths, key=len, reverse=True):
            s = s.replace(path, self.paths[path])

        def port(m):
            p = int(m.group(2))
            return m.group(1) + self.ports.get(p, str(p))
        s = re.sub(r"(127\.0\.0\.1:|localhost:)(\d+)", port, s)
        # clientv3 names each balancer target endpoint://client-<uuid>/.
        s = re.sub(r"client-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
                   r"[0-9a-f]{12}", "client-<uuid>", s)
        rx, forms = self._id_regex()
        if rx is not None:
            s = rx.sub(lambda m: forms[m.group(1)], s)
        return s

    def value(self, v):
        """Substitutes in one decoded JSON/protobuf value."""
        if isinstance(v, bool):
            return v
        if isinstance(v, int):
            return self.ids.get(v, v) if v != 0 else v
        if isinstance(v, str):
            return self.text(v)
        return v


# ------------------------------------------------------------ field names

# Field names (as each format spells them) whose values are masked.
_REVISION_FIELDS = {
    # json / protobuf
    "revision", "create_revision", "mod_revision", "compact_revision",
    "hash_revision", "CompactRevision",
    # fields
    "Revision", "CreateRevision", "ModRevision", "PrevCreateRevision",
    "PrevModRevision",
    # table / simple columns (lower-cased)
    "revision (db)",
}
_ALWAYS_FIELDS = {
    # json / protobuf
    "raft_term", "raftTerm", "raftIndex", "raftAppliedIndex", "dbSize",
    "dbSizeInUse", "took", "hash", "totalSize", "totalKey",
    # fields
    "RaftTerm", "RaftIndex", "RaftAppliedIndex", "DBSize", "Took", "Hash",
    "Size", "Keys",
}
# Only when the value is a string (server version), not a key's version.
_VERSION_FIELDS = {"version", "Version"}

# Table / simple columns, by lower-case header.
_ALWAYS_COLUMNS = {"version", "db size", "raft term", "raft index",
                   "raft applied index", "took", "hash", "total keys",
                   "total size"}
_REVISION_COLUMNS = {"revision"}

_STATUS_COLUMNS = ["endpoint", "id", "version", "db size", "is leader",
                   "is learner", "raft term", "raft index",
                   "raft applied index", "errors"]
_HASHKV_COLUMNS = ["endpoint", "hash"]
_DBSTATUS_COLUMNS = ["hash", "revision", "total keys", "total size"]

MASK = "<*>"


def _masked_name(name, value, strict_revisions, extra):
    if name in extra:
        return True
    if name in _ALWAYS_FIELDS:
        return True
    if not strict_revisions and name in _REVISION_FIELDS:
        return True
    if name in _VERSION_FIELDS and isinstance(value, str):
        return True
    return False


# ------------------------------------------------------------ formats

def output_format(args):
    """The -w / --write-out value in an etcdctl argument list."""
    fmt = "simple"
    for i, a in enumerate(args):
        if a in ("-w", "--write-out") and i + 1 < len(args):
            fmt = args[i + 1]
        elif a.startswith("--write-out="):
            fmt = a.split("=", 1)[1]
        elif a.startswith("-w") and len(a) > 2 and not a.startswith("--"):
            fmt = a[2:].lstrip("=")
    return fmt


def _command(args):
    """The words of the etcdctl command (flags dropped), e.g. ['lease',
    'timetolive']."""
    words = []
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a in ("-w", "--write-out"):
            skip = True
            continue
        if a.startswith("-"):
            continue
        words.append(a)
    return words[:2]


def _extra_masks(args):
    cmd = _command(args)
    if cmd[:2] == ["lease", "timetolive"]:
        # Remaining TTL depends on when the command ran.
        return {"TTL"}
    return set()


def mask_json_value(v, ident, strict_revisions, extra, name=None):
    if isinstance(v, dict):
        return {k: (MASK if _masked_name(k, x, strict_revisions, extra)
                    else mask_json_value(x, ident, strict_revisions, extra, k))
                for k, x in v.items()}
    if isinstance(v, list):
        return [mask_json_value(x, ident, strict_revisions, extra, name)
                for x in v]
    return ident.value(v)


def mask_json(text, ident, strict_revisions, extra=frozenset()):
    out = []
    for line in text.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            out.append(ident.text(line))
            continue
        doc = mask_json_value(doc, ident, strict_revisions, extra)
        out.append(json.dumps(doc, sort_keys=False, separators=(",", ":")))
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


_FIELDS_LINE = re.compile(r'^"([A-Za-z]+)" : ?(.*)$')


def mask_fields(text, ident, strict_revisions, extra=frozenset()):
    out = []
    for line in text.splitlines():
        m = _FIELDS_LINE.match(line)
        if m:
            name, value = m.group(1), m.group(2)
            quoted = value.startswith('"')
            if _masked_name(name, value if quoted else 0, strict_revisions,
                            extra):
                line = '"%s" : %s' % (name, MASK)
            else:
                line = ident.text(line)
        else:
            line = ident.text(line)
        out.append(line)
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def _mask_columns(cells, headers, ident, strict_revisions):
    out = []
    for i, cell in enumerate(cells):
        h = headers[i].lower() if i < len(headers) else ""
        if h in _ALWAYS_COLUMNS or (not strict_revisions and
                                    h in _REVISION_COLUMNS):
            out.append(MASK)
        else:
            out.append(ident.text(cell))
    return out


def mask_table(text, ident, strict_revisions):
    """Canonical rows 'a | b | c' with masked cells; border lines kept as a
    count so a missing row still shows."""
    out = []
    headers = None
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("|"):
            cells = [c.strip() for c in s.strip("|").split("|")]
            if headers is None:
                headers = cells
                out.append(" | ".join(cells))
            else:
                out.append(" | ".join(_mask_columns(cells, headers, ident,
                                                    strict_revisions)))
        elif s.startswith("+"):
            out.append("+---+")
        else:
            out.append(ident.text(line))
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def _mask_simple_rows(text, columns, ident, strict_revisions):
    out = []
    for line in text.splitlines():
        cells = line.split(", ", len(columns) - 1)
        if len(cells) == len(columns):
            out.append(", ".join(_mask_columns(cells, columns, ident,
                                               strict_revisions)))
        else:
            out.append(ident.text(line))
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def mask_simple(text, args, ident, strict_revisions):
    cmd = _command(args)
    if cmd == ["endpoint", "status"]:
        return _mask_simple_rows(text, _STATUS_COLUMNS, ident, strict_revisions)
    if cmd == ["endpoint", "hashkv"]:
        return _mask_simple_rows(text, _HASHKV_COLUMNS, ident, strict_revisions)
    if cmd == ["snapshot", "status"]:
        return _mask_simple_rows(text, _DBSTATUS_COLUMNS, ident,
                                 strict_revisions)
    s = text
    if cmd[:1] == ["lease"]:
        s = re.sub(r"remaining\(-?\d+s\)", "remaining(%s)" % MASK, s)
    s = re.sub(r"took = \S+", "took = " + MASK, s)
    if not strict_revisions:
        s = re.sub(r"^compacted revision \d+$", "compacted revision " + MASK, s,
                   flags=re.M)
        s = re.sub(r"^progress notify: \d+$", "progress notify: " + MASK, s,
                   flags=re.M)
    return ident.text(s)


# ------------------------------------------------------------ protobuf

# A little of etcd's rpc.proto / kv.proto: field number -> (name, kind) where
# kind is "int", "bool", "bytes", "string" or the name of a message below.
PB_SCHEMA = {
    "ResponseHeader": {1: ("cluster_id", "int"), 2: ("member_id", "int"),
                       3: ("revision", "int"), 4: ("raft_term", "int")},
    "KeyValue": {1: ("key", "bytes"), 2: ("create_revision", "int"),
                 3: ("mod_revision", "int"), 4: ("version", "int"),
                 5: ("value", "bytes"), 6: ("lease", "int")},
    "RangeResponse": {1: ("header", "ResponseHeader"), 2: ("kvs", "KeyValue"),
                      3: ("more", "bool"), 4: ("count", "int")},
    "PutResponse": {1: ("header", "ResponseHeader"),
                    2: ("prev_kv", "KeyValue")},
    "DeleteRangeResponse": {1: ("header", "ResponseHeader"),
                            2: ("deleted", "int"), 3: ("prev_kvs", "KeyValue")},
    "ResponseOp": {1: ("response_range", "RangeResponse"),
                   2: ("response_put", "PutResponse"),
                   3: ("response_delete_range", "DeleteRangeResponse"),
                   4: ("response_txn", "TxnResponse")},
    "TxnResponse": {1: ("header", "ResponseHeader"), 2: ("succeeded", "bool"),
                    3: ("responses", "ResponseOp")},
    "Event": {1: ("type", "int"), 2: ("kv", "KeyValue"),
              3: ("prev_kv", "KeyValue")},
    "WatchResponse": {1: ("header", "ResponseHeader"), 2: ("watch_id", "int"),
                      3: ("created", "bool"), 4: ("canceled", "bool"),
                      5: ("compact_revision", "int"),
                      6: ("cancel_reason", "string"), 7: ("fragment", "bool"),
                      11: ("events", "Event")},
    "Member": {1: ("ID", "int"), 2: ("name", "string"),
               3: ("peerURLs", "string"), 4: ("clientURLs", "string"),
               5: ("isLearner", "bool")},
    "MemberListResponse": {1: ("header", "ResponseHeader"),
                           2: ("members", "Member")},
    "AlarmMember": {1: ("memberID", "int"), 2: ("alarm", "int")},
    "AlarmResponse": {1: ("header", "ResponseHeader"),
                      2: ("alarms", "AlarmMember")},
}

# int64 fields (the rest of the varint fields are uint64 or enums).
_PB_SIGNED = {"revision", "create_revision", "mod_revision", "version",
              "count", "deleted", "compact_revision", "watch_id"}

_PB_TOP = {"get": "RangeResponse", "put": "PutResponse",
           "del": "DeleteRangeResponse", "txn": "TxnResponse",
           "watch": "WatchResponse", "member": "MemberListResponse",
           "alarm": "AlarmResponse"}


class PbError(Exception):
    pass


def _varint(b, i):
    shift = result = 0
    while True:
        if i >= len(b):
            raise PbError("truncated varint")
        c = b[i]
        i += 1
        result |= (c & 0x7F) << shift
        if not c & 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise PbError("varint too long")


def pb_decode(b, msg):
    """Decodes bytes as message `msg` into a list of [name, value] pairs in
    wire order (repeated fields repeat; unknown fields are kept by number)."""
    schema = PB_SCHEMA[msg]
    out = []
    i = 0
    while i < len(b):
        tag, i = _varint(b, i)
        num, wt = tag >> 3, tag & 7
        name, kind = schema.get(num, ("#%d" % num, None))
        if wt == 0:
            v, i = _varint(b, i)
            if kind == "bool":
                v = bool(v)
            elif v >= 1 << 63 and name in _PB_SIGNED:
                v -= 1 << 64  # int64 fields are two's complement
            out.append([name, v])
        elif wt == 2:
            n, i = _varint(b, i)
            if i + n > len(b):
                raise PbError("truncated field %s" % name)
            raw = b[i:i + n]
            i += n
            if kind in PB_SCHEMA:
                out.append([name, pb_decode(raw, kind)])
            elif kind == "string":
                out.append([name, raw.decode("utf-8", "replace")])
            else:
                out.append([name, raw.decode("latin-1")])
        elif wt == 1:
            out.append([name, int.from_bytes(b[i:i + 8], "little")])
            i += 8
        elif wt == 5:
            out.append([name, int.from_bytes(b[i:i + 4], "little")])
            i += 4
        else:
            raise PbError("bad wire type %d" % wt)
    return out


def _pb_lines(tree, ident, strict_revisions, indent=0):
    lines = []
    for name, v in tree:
        pad = "  " * indent
        if isinstance(v, list):
            lines.append("%s%s {" % (pad, name))
            lines.extend(_pb_lines(v, ident, strict_revisions, indent + 1))
            lines.append(pad + "}")
        elif _masked_name(name, v, strict_revisions, ()):
            lines.append("%s%s: %s" % (pad, name, MASK))
        else:
            lines.append("%s%s: %r" % (pad, name, ident.value(v)))
    return lines


def _pb_mask_tree(tree, ident, strict_revisions):
    out = []
    for name, v in tree:
        if isinstance(v, list):
            out.append([name, _pb_mask_tree(v, ident, strict_revisions)])
        elif _masked_name(name, v, strict_revisions, ()):
            out.append([name, MASK])
        else:
            out.append([name, ident.value(v)])
    return out


def mask_protobuf(raw, args, ident, strict_revisions):
    cmd = _command(args)
    top = _PB_TOP.get(cmd[0] if cmd else "")
    if top is None or not raw:
        return ident.text(raw.decode("utf-8", "replace"))
    try:
        tree = pb_decode(raw, top)
    except PbError as e:
        return "undecodable %s (%s): %r" % (top, e, raw)
    if unordered(args):
        # Mask first, then sort; the second pass only prints (no IDs left).
        tree = _sort_pb(_pb_mask_tree(tree, ident, strict_revisions))
        return "\n".join(_pb_lines(tree, Identities(), True)) + "\n"
    return "\n".join(_pb_lines(tree, ident, strict_revisions)) + "\n"


# ------------------------------------------------------------ ordering

def unordered(args):
    """Whether the items etcdctl prints for args come in an order that is
    not part of etcd's contract: members are listed by (random) member ID,
    cluster-wide endpoint results in completion order, leases and a lease's
    keys in Go map order, alarms per member."""
    cmd = _command(args)
    if cmd[:2] in (["member", "list"], ["lease", "list"], ["alarm", "list"]):
        return True
    if cmd[:2] == ["lease", "timetolive"]:
        return "--keys" in args
    if cmd[:1] == ["endpoint"] or cmd[:1] == ["defrag"]:
        return True
    return False


def _sort_json(v):
    if isinstance(v, dict):
        return {k: _sort_json(x) for k, x in v.items()}
    if isinstance(v, list):
        items = [_sort_json(x) for x in v]
        return sorted(items, key=lambda x: json.dumps(x, sort_keys=True))
    return v


def _field_name(line):
    m = _FIELDS_LINE.match(line)
    return m.group(1) if m else None


def _sort_fields(text):
    lines = text.splitlines()
    # Runs of one repeated field ("ID" in lease list, "Key" in timetolive).
    out, i = [], 0
    while i < len(lines):
        j = i
        name = _field_name(lines[i])
        while (j + 1 < len(lines) and name is not None and
               _field_name(lines[j + 1]) == name):
            j += 1
        out.extend(sorted(lines[i:j + 1]))
        i = j + 1
    # Records: blank-line separated; the response header (ClusterID ..
    # RaftTerm) of a member list precedes the first record.
    head = []
    if len(out) >= 4 and _field_name(out[0]) == "ClusterID" and \
            _field_name(out[4] if len(out) > 4 else "") == "ID":
        head, out = out[:4], out[4:]
    blocks, cur = [], []
    for line in out:
        cur.append(line)
        if line == "":
            blocks.append(cur)
            cur = []
    if cur:
        blocks.append(cur)
    blocks.sort()
    return "\n".join(head + [l for b in blocks for l in b]) + "\n"


def _sort_pb(tree):
    out = []
    for name, v in tree:
        out.append([name, _sort_pb(v) if isinstance(v, list) else v])
    return sorted(out, key=repr)


def normalize_order(masked, args):
    """Sorts the items of an unordered output (already masked)."""
    if not unordered(args):
        return masked
    fmt = output_format(args)
    if fmt == "json":
        docs = []
        for line in masked.splitlines():
            try:
                docs.append(json.dumps(_sort_json(json.loads(line)),
                                       separators=(",", ":")))
            except ValueError:
                docs.append(line)
        return "\n".join(docs) + "\n"
    if fmt == "fields":
        return _sort_fields(masked)
    if fmt == "table":
        lines = masked.splitlines()
        rows = [l for l in lines if l != "+---+"]
        return "\n".join(rows[:1] + sorted(rows[1:])) + "\n"
    if fmt == "protobuf":
        return masked  # sorted before printing (mask_protobuf)
    s = re.sub(r"attached keys\(\[([^\]]*)\]\)",
               lambda m: "attached keys([%s])" % " ".join(
                   sorted(m.group(1).split(" "))), masked)
    lines = s.splitlines()
    if _command(args)[:2] == ["lease", "list"] and lines:
        return "\n".join(lines[:1] + sorted(lines[1:])) + "\n"
    return "\n".join(sorted(lines)) + ("\n" if lines else "")


# ------------------------------------------------------------ entry points

def mask_stdout(raw, args, ident, strict_revisions=False):
    """Masked text of etcdctl's stdout (bytes) for argument list args."""
    fmt = output_format(args)
    if fmt == "protobuf":
        return mask_protobuf(raw, args, ident, strict_revisions)
    text = raw.decode("utf-8", "replace")
    extra = _extra_masks(args)
    if fmt == "json":
        masked = mask_json(text, ident, strict_revisions, extra)
    elif fmt == "fields":
        masked = mask_fields(text, ident, strict_revisions, extra)
    elif fmt == "table":
        masked = mask_table(text, ident, strict_revisions)
    else:
        masked = mask_simple(text, args, ident, strict_revisions)
    return normalize_order(masked, args)


_LOG_MASKED_KEYS = {"ts", "took", "size"}


def mask_stderr(raw, args, ident, strict_revisions=False):
    """Masked stderr: clientv3/etcdctl zap JSON log lines lose their
    timestamps, durations and sizes; 'took = ...' in health lines too."""
    text = raw.decode("utf-8", "replace")
    if "\npanic: " in "\n" + text:
        return _mask_panic(text)
    out = []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("{") and s.endswith("}"):
            try:
                doc = json.loads(s)
            except ValueError:
                doc = None
            if isinstance(doc, dict) and "level" in doc:
                doc = {k: (MASK if k in _LOG_MASKED_KEYS else ident.value(v))
                       for k, v in doc.items()}
                out.append(json.dumps(doc, separators=(",", ":")))
                continue
        line = re.sub(r"took = \S+", "took = " + MASK, line)
        out.append(ident.text(line))
    if unordered(args):
        out.sort()
    return "\n".join(out)


def _mask_panic(text):
    """A Go panic (etcdctl crashing on a response, e.g. `alarm list -w
    fields` on a response without header): keep the message and the
    function names, drop argument values and addresses."""
    out = []
    for line in text.splitlines():
        if line.startswith("panic: ") or line.startswith("[signal"):
            out.append(re.sub(r"pc=0x[0-9a-f]+", "pc=<*>", line))
        elif line and not line[0].isspace() and "(" in line and \
                not line.startswith("goroutine"):
            out.append(line[:line.rfind("(")])
    return "\n".join(out)

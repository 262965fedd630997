/* The attributes normalize reads from every span of an OTLP ExportTraceServiceRequest, read from its
 * protobuf bytes in one pass (ingest/normalize.py's _fields, in C: reading them through the protobuf runtime
 * costs about 0.5 us per attribute in Python objects, most of a span's decoding time).
 *
 *   span_fields(body: bytes, known: dict[str, tuple[str, int, bool]], tag_prefix: str)
 *       -> list[tuple[dict[str, Any], dict[str, str]] | None]
 *
 * One entry per span, in the order resource_spans -> scope_spans -> spans (the order the protobuf runtime
 * iterates them). ``known`` maps an attribute key to (field, rank, text) exactly as normalize._SPAN_FIELDS:
 * the best-ranked non-empty variant of a field wins, a text field's non-string value becomes its str().
 * Attributes whose key starts with ``tag_prefix`` are returned as tags (name without the prefix -> str).
 * An entry is None when the span has a value this reader leaves to the Python path (an array or key-value
 * list in a read attribute or a tag). ValueError when the bytes are not well-formed protobuf: every length
 * is checked against the buffer before it is used, and when a string is not UTF-8.
 *
 *   span_fields(body, known, tag_prefix, max_plain: int, max_number: float) -> (entries, plain: bool)
 *
 * With the two limits, the reader also screens what it reads for ingest/bounds.py, at no extra pass: ``plain`` is
 * True when every string read (values and tag names) is at most ``max_plain`` bytes without a NUL byte, every
 * number is in [0, max_number] (NaN fails), no value is bytes, and no non-text field came as a string. When it
 * is False, ingest/bounds.py checks each value itself.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} Reader;

static int read_varint(Reader *r, uint64_t *out) {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) return -1;
        uint8_t byte = *r->p++;
        value |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *out = value;
            return 0;
        }
    }
    return -1;
}

/* Skip one field's value of the given wire type; -1 when it runs past the end or the type is unknown. */
static int skip_field(Reader *r, uint32_t wire_type) {
    uint64_t n;
    switch (wire_type) {
    case 0: return read_varint(r, &n);
    case 1:
        if (r->end - r->p < 8) return -1;
        r->p += 8;
        return 0;
    case 2:
        if (read_varint(r, &n) < 0 || n > (uint64_t)(r->end - r->p)) return -1;
        r->p += n;
        return 0;
    case 5:
        if (r->end - r->p < 4) return -1;
        r->p += 4;
        return 0;
    default: return -1;
    }
}

/* Read the next tag; 1 when one was read, 0 at the end, -1 on malformed input. */
static int next_tag(Reader *r, uint32_t *field, uint32_t *wire_type) {
    if (r->p >= r->end) return 0;
    uint64_t tag;
    if (read_varint(r, &tag) < 0 || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff) return -1;
    *field = (uint32_t)(tag >> 3);
    *wire_type = (uint32_t)(tag & 7);
    return 1;
}

/* A length-delimited field's content as a sub-reader. */
static int sub_reader(Reader *r, Reader *sub) {
    uint64_t n;
    if (read_varint(r, &n) < 0 || n > (uint64_t)(r->end - r->p)) return -1;
    sub->p = r->p;
    sub->end = r->p + n;
    r->p += n;
    return 0;
}

#define UNSUPPORTED ((PyObject *)1) /* an array or kvlist value: the span goes the Python way */

typedef struct {
    PyObject *known;  /* dict: key -> (field, rank, text) */
    const char *tag_prefix;
    Py_ssize_t tag_prefix_len;
    Py_ssize_t max_plain; /* < 0: no screening */
    double max_number;
    int plain;            /* cleared by any value that needs ingest/bounds.py's closer look */
} Config;

static void screen_text(Config *config, const uint8_t *p, Py_ssize_t n) {
    if (config->max_plain >= 0 && (n > config->max_plain || memchr(p, 0, (size_t)n) != NULL)) config->plain = 0;
}

static void screen_number(Config *config, double d) {
    if (!(d >= 0.0 && d <= config->max_number)) config->plain = 0; /* NaN fails both */
}

/* Decode an AnyValue: a new reference; Py_None for an unset one; UNSUPPORTED; NULL on error. */
static PyObject *any_value(Config *config, Reader *value) {
    PyObject *result = NULL;
    int unsupported = 0;
    uint32_t field, wire_type;
    int more;
    while ((more = next_tag(value, &field, &wire_type)) == 1) {
        Reader sub;
        uint64_t n;
        PyObject *decoded = NULL;
        if (field == 1 && wire_type == 2) { /* string_value */
            if (sub_reader(value, &sub) < 0) goto malformed;
            screen_text(config, sub.p, sub.end - sub.p);
            decoded = PyUnicode_DecodeUTF8((const char *)sub.p, sub.end - sub.p, NULL); /* strict */
        } else if (field == 2 && wire_type == 0) { /* bool_value */
            if (read_varint(value, &n) < 0) goto malformed;
            decoded = PyBool_FromLong(n != 0);
        } else if (field == 3 && wire_type == 0) { /* int_value */
            if (read_varint(value, &n) < 0) goto malformed;
            screen_number(config, (double)(int64_t)n);
            decoded = PyLong_FromLongLong((long long)(int64_t)n);
        } else if (field == 4 && wire_type == 1) { /* double_value */
            if (value->end - value->p < 8) goto malformed;
            double d = PyFloat_Unpack8((const char *)value->p, 1);
            value->p += 8;
            screen_number(config, d);
            decoded = (d == -1.0 && PyErr_Occurred()) ? NULL : PyFloat_FromDouble(d);
        } else if ((field == 5 || field == 6) && wire_type == 2) { /* array_value, kvlist_value */
            if (skip_field(value, wire_type) < 0) goto malformed;
            Py_CLEAR(result);
            unsupported = 1; /* the last value set wins, as in the protobuf runtime's oneof */
            continue;
        } else if (field == 7 && wire_type == 2) { /* bytes_value */
            if (sub_reader(value, &sub) < 0) goto malformed;
            config->plain = 0;
            decoded = PyBytes_FromStringAndSize((const char *)sub.p, sub.end - sub.p);
        } else {
            if (skip_field(value, wire_type) < 0) goto malformed;
            continue;
        }
        if (decoded == NULL) {
            Py_XDECREF(result);
            return NULL;
        }
        Py_XSETREF(result, decoded); /* the last value set wins, as in the protobuf runtime's oneof */
        unsupported = 0;
    }
    if (more < 0) goto malformed;
    if (unsupported) return UNSUPPORTED;
    if (result == NULL) Py_RETURN_NONE;
    return result;
malformed:
    Py_XDECREF(result);
    PyErr_SetString(PyExc_ValueError, "malformed AnyValue");
    return NULL;
}

static int is_empty(PyObject *value) {
    return value == Py_None || (PyUnicode_Check(value) && PyUnicode_GET_LENGTH(value) == 0);
}

/* Read one KeyValue into fields/ranks/tags. 0 ok, 1 unsupported value, -1 error (exception set). */
static int key_value(Config *config, Reader *kv, PyObject *fields, PyObject *ranks, PyObject *tags) {
    Reader key = {NULL, NULL}, value = {NULL, NULL};
    uint32_t field, wire_type;
    int more;
    while ((more = next_tag(kv, &field, &wire_type)) == 1) {
        if (field == 1 && wire_type == 2) {
            if (sub_reader(kv, &key) < 0) goto malformed;
        } else if (field == 2 && wire_type == 2) {
            if (sub_reader(kv, &value) < 0) goto malformed;
        } else if (skip_field(kv, wire_type) < 0) {
            goto malformed;
        }
    }
    if (more < 0) goto malformed;
    if (key.p == NULL) return 0; /* no key: the empty key, which nothing reads */
    Py_ssize_t key_len = key.end - key.p;
    int is_tag = key_len > config->tag_prefix_len &&
                 memcmp(key.p, config->tag_prefix, config->tag_prefix_len) == 0;
    PyObject *name = PyUnicode_DecodeUTF8((const char *)key.p, key_len, "surrogateescape");
    if (is_tag) screen_text(config, key.p + config->tag_prefix_len, key_len - config->tag_prefix_len);
    if (name == NULL) return -1;
    PyObject *spec = PyDict_GetItemWithError(config->known, name); /* borrowed */
    if (spec == NULL) {
        if (PyErr_Occurred() || !is_tag) {
            Py_DECREF(name);
            return PyErr_Occurred() ? -1 : 0;
        }
        /* a tag: name without the prefix -> the value as text */
        PyObject *decoded = value.p ? any_value(config, &value) : (Py_INCREF(Py_None), Py_None);
        int status = -1;
        if (decoded == UNSUPPORTED) {
            status = 1;
        } else if (decoded != NULL) {
            PyObject *text = decoded == Py_None ? PyUnicode_FromString("") :
                             PyUnicode_Check(decoded) ? (Py_INCREF(decoded), decoded) : PyObject_Str(decoded);
            Py_DECREF(decoded);
            if (text != NULL) {
                PyObject *short_name = PyUnicode_Substring(name, config->tag_prefix_len, PyUnicode_GET_LENGTH(name));
                if (short_name != NULL) {
                    status = PyDict_SetItem(tags, short_name, text) < 0 ? -1 : 0;
                    Py_DECREF(short_name);
                }
                Py_DECREF(text);
            }
        }
        Py_DECREF(name);
        return status;
    }
    Py_DECREF(name);
    if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) != 3) {
        PyErr_SetString(PyExc_TypeError, "known: values must be (field, rank, text)");
        return -1;
    }
    PyObject *field_name = PyTuple_GET_ITEM(spec, 0);
    PyObject *rank = PyTuple_GET_ITEM(spec, 1);
    int text = PyObject_IsTrue(PyTuple_GET_ITEM(spec, 2));
    if (text < 0) return -1;
    if (value.p == NULL) return 0; /* no value: absent */
    PyObject *decoded = any_value(config, &value);
    if (decoded == NULL) return -1;
    if (decoded == UNSUPPORTED) return 1;
    if (!text && PyUnicode_Check(decoded)) config->plain = 0; /* a number or flag sent as text */
    if (is_empty(decoded)) { /* an empty variant does not hide another one */
        Py_DECREF(decoded);
        return 0;
    }
    PyObject *best = PyDict_GetItemWithError(ranks, field_name); /* borrowed */
    if (best == NULL && PyErr_Occurred()) goto fail;
    if (best != NULL) {
        int worse = PyObject_RichCompareBool(best, rank, Py_LT);
        if (worse < 0) goto fail;
        if (worse) { /* a better-ranked variant of this field came first */
            Py_DECREF(decoded);
            return 0;
        }
    }
    if (text && !PyUnicode_Check(decoded)) {
        PyObject *as_text = PyObject_Str(decoded);
        Py_DECREF(decoded);
        if (as_text == NULL) return -1;
        decoded = as_text;
    }
    if (PyDict_SetItem(ranks, field_name, rank) < 0 || PyDict_SetItem(fields, field_name, decoded) < 0) goto fail;
    Py_DECREF(decoded);
    return 0;
fail:
    Py_DECREF(decoded);
    return -1;
malformed:
    PyErr_SetString(PyExc_ValueError, "malformed KeyValue");
    return -1;
}

/* One Span: append (fields, tags) or None to out. */
static int span(Config *config, Reader *r, PyObject *out) {
    PyObject *fields = PyDict_New(), *ranks = PyDict_New(), *tags = PyDict_New(), *entry = NULL;
    int unsupported = 0, status = -1, more;
    uint32_t field, wire_type;
    if (fields == NULL || ranks == NULL || tags == NULL) goto done;
    while ((more = next_tag(r, &field, &wire_type)) == 1) {
        if (field == 9 && wire_type == 2) { /* attributes */
            Reader kv;
            if (sub_reader(r, &kv) < 0) goto malformed;
            if (!unsupported) {
                int s = key_value(config, &kv, fields, ranks, tags);
                if (s < 0) goto done;
                unsupported = s;
            }
        } else if (skip_field(r, wire_type) < 0) {
            goto malformed;
        }
    }
    if (more < 0) goto malformed;
    entry = unsupported ? (Py_INCREF(Py_None), Py_None) : PyTuple_Pack(2, fields, tags);
    if (entry != NULL) status = PyList_Append(out, entry);
    goto done;
malformed:
    PyErr_SetString(PyExc_ValueError, "malformed Span");
done:
    Py_XDECREF(entry);
    Py_XDECREF(fields);
    Py_XDECREF(ranks);
    Py_XDECREF(tags);
    return status;
}

/* Walk message -> field `wanted` (length-delimited, repeated), calling `each` on every occurrence. */
typedef int (*Each)(Config *, Reader *, PyObject *);

static int each_of(Config *config, Reader *r, uint32_t wanted, Each each, PyObject *out) {
    uint32_t field, wire_type;
    int more;
    while ((more = next_tag(r, &field, &wire_type)) == 1) {
        if (field == wanted && wire_type == 2) {
            Reader sub;
            if (sub_reader(r, &sub) < 0) {
                more = -1;
                break;
            }
            if (each(config, &sub, out) < 0) return -1;
        } else if (skip_field(r, wire_type) < 0) {
            more = -1;
            break;
        }
    }
    if (more < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "malformed OTLP message");
        return -1;
    }
    return 0;
}

static int scope_spans(Config *config, Reader *r, PyObject *out) {
    return each_of(config, r, 2, span, out); /* ScopeSpans.spans */
}

static int resource_spans(Config *config, Reader *r, PyObject *out) {
    return each_of(config, r, 2, scope_spans, out); /* ResourceSpans.scope_spans */
}

static PyObject *span_fields(PyObject *Py_UNUSED(module), PyObject *args) {
    Py_buffer body;
    Config config;
    PyObject *prefix;
    config.max_plain = -1;
    config.max_number = 0.0;
    config.plain = 1;
    if (!PyArg_ParseTuple(args, "y*O!U|nd", &body, &PyDict_Type, &config.known, &prefix, &config.max_plain,
                          &config.max_number))
        return NULL;
    config.tag_prefix = PyUnicode_AsUTF8AndSize(prefix, &config.tag_prefix_len);
    PyObject *out = config.tag_prefix ? PyList_New(0) : NULL;
    if (out != NULL) {
        Reader r = {(const uint8_t *)body.buf, (const uint8_t *)body.buf + body.len};
        if (each_of(&config, &r, 1, resource_spans, out) < 0) Py_CLEAR(out); /* ExportTraceServiceRequest */
    }
    PyBuffer_Release(&body);
    if (out == NULL || config.max_plain < 0) return out;
    PyObject *result = Py_BuildValue("(NO)", out, config.plain ? Py_True : Py_False);
    return result;
}

static PyMethodDef methods[] = {
    {"span_fields", span_fields, METH_VARARGS, "The attributes normalize reads, per span, from OTLP protobuf bytes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_otlp_fields", NULL, -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__otlp_fields(void) { return PyModule_Create(&module); }

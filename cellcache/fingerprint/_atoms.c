/* The pickle stream of a list of exact immutable builtins, without the list.
 *
 * An object column of str (or bytes, int, float, bool, None) is fingerprinted
 * as the digest of ``pickle.Pickler(protocol=5)`` in fast mode dumping
 * ``column.tolist()``. Building the list, asking ``infer_dtype`` what it holds
 * and pickling it visit every item three times from Python's C loops; this
 * writes the very same bytes in one pass over the array's pointers, so a key
 * made here equals a key made on a machine without this module.
 *
 * It follows CPython's Modules/_pickle.c for these types: the PROTO header
 * outside any frame, frames committed at an opcode boundary once they reach
 * 64 KiB, payloads of 64 KiB or more written outside frames, batches of 1000
 * items between MARK and APPENDS, ints in BININT1/2/4 or LONG1, floats as
 * big-endian BINFLOAT, strings as UTF-8 ("surrogatepass" for lone
 * surrogates). The tests compare it with the pickler byte for byte.
 *
 * Any other item (a subclass, a container, an int beyond 64 bits) makes it
 * return None, and the caller takes the pickler's route.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#include <stdint.h>

#define FRAME_SIZE_TARGET (64 * 1024)
#define FRAME_SIZE_MIN 4
#define FRAME_HEADER_SIZE 9
#define BATCHSIZE 1000
#define PREFETCH_AHEAD 8

/* What the items were, for the caller's infer_dtype verdict. */
#define SEEN_NONE 1
#define SEEN_BOOL 2
#define SEEN_INT 4
#define SEEN_FLOAT 8
#define SEEN_NAN 16
#define SEEN_STR 32
#define SEEN_BYTES 64

typedef struct {
    PyObject *out; /* a bytes object grown in place: the open frame, or what precedes it */
    Py_ssize_t len;
    Py_ssize_t frame_start; /* -1: no open frame */
    int framing;
    PyObject *write; /* called with each committed run of bytes, as a pickler's file */
} Writer;

/* ``write`` gets a view of memory this writer reuses, or of an item's: it must copy or hash, not keep. */
static int
write_through(Writer *w, const char *data, Py_ssize_t size)
{
    PyObject *view = PyMemoryView_FromMemory((char *)data, size, PyBUF_READ);
    if (view == NULL)
        return -1;
    PyObject *result = PyObject_CallOneArg(w->write, view);
    Py_DECREF(view);
    if (result == NULL)
        return -1;
    Py_DECREF(result);
    return 0;
}

/* Hand the buffer to ``write`` and empty it: only when no frame is open, as its header isn't final. */
static int
flush(Writer *w)
{
    if (w->len == 0)
        return 0;
    if (write_through(w, PyBytes_AS_STRING(w->out), w->len) < 0)
        return -1;
    w->len = 0;
    return 0;
}

static int
reserve(Writer *w, Py_ssize_t extra)
{
    Py_ssize_t cap = PyBytes_GET_SIZE(w->out);
    if (w->len + extra <= cap)
        return 0;
    Py_ssize_t want = cap * 2;
    if (want < w->len + extra)
        want = w->len + extra;
    return _PyBytes_Resize(&w->out, want);
}

static int
put(Writer *w, const char *s, Py_ssize_t n)
{
    int new_frame = w->framing && w->frame_start == -1;
    if (reserve(w, n + (new_frame ? FRAME_HEADER_SIZE : 0)) < 0)
        return -1;
    char *data = PyBytes_AS_STRING(w->out);
    if (new_frame) {
        w->frame_start = w->len;
        memset(data + w->len, 0xFE, FRAME_HEADER_SIZE);
        w->len += FRAME_HEADER_SIZE;
    }
    memcpy(data + w->len, s, (size_t)n);
    w->len += n;
    return 0;
}

static void
size64(char *out, uint64_t value)
{
    for (int i = 0; i < 8; i++)
        out[i] = (char)((value >> (8 * i)) & 0xff);
}

static void
commit_frame(Writer *w)
{
    if (!w->framing || w->frame_start == -1)
        return;
    Py_ssize_t frame_len = w->len - w->frame_start - FRAME_HEADER_SIZE;
    char *q = PyBytes_AS_STRING(w->out) + w->frame_start;
    if (frame_len >= FRAME_SIZE_MIN) {
        q[0] = '\x95'; /* FRAME */
        size64(q + 1, (uint64_t)frame_len);
    }
    else {
        memmove(q, q + FRAME_HEADER_SIZE, (size_t)frame_len);
        w->len -= FRAME_HEADER_SIZE;
    }
    w->frame_start = -1;
}

static int
opcode_boundary(Writer *w)
{
    if (w->framing && w->frame_start != -1 && w->len - w->frame_start - FRAME_HEADER_SIZE >= FRAME_SIZE_TARGET) {
        commit_frame(w);
        return flush(w);
    }
    return 0;
}

static int
put_payload(Writer *w, const char *header, Py_ssize_t header_len, const char *data, Py_ssize_t size)
{
    int framing = w->framing;
    if (size >= FRAME_SIZE_TARGET) {
        commit_frame(w);
        w->framing = 0;
    }
    if (put(w, header, header_len) < 0)
        return -1;
    if (size >= FRAME_SIZE_TARGET) {
        /* Outside any frame: straight to ``write``, not through the buffer. */
        if (flush(w) < 0 || write_through(w, data, size) < 0)
            return -1;
    }
    else if (put(w, data, size) < 0)
        return -1;
    w->framing = framing;
    return 0;
}

static int
put_sized(Writer *w, char short_op, char op4, char op8, const char *data, Py_ssize_t size)
{
    char header[9];
    Py_ssize_t header_len;
    if (size <= 0xff) {
        header[0] = short_op;
        header[1] = (char)size;
        header_len = 2;
    }
    else if ((uint64_t)size <= 0xffffffffULL) {
        header[0] = op4;
        for (int i = 0; i < 4; i++)
            header[1 + i] = (char)(((uint64_t)size >> (8 * i)) & 0xff);
        header_len = 5;
    }
    else {
        header[0] = op8;
        size64(header + 1, (uint64_t)size);
        header_len = 9;
    }
    return put_payload(w, header, header_len, data, size);
}

/* 1: written; 0: not an item this writes; -1: error. */
static int
put_item(Writer *w, PyObject *item, int *seen)
{
    PyTypeObject *type = Py_TYPE(item);
    if (opcode_boundary(w) < 0)
        return -1;
    if (item == Py_None) {
        *seen |= SEEN_NONE;
        return put(w, "N", 1) < 0 ? -1 : 1;
    }
    if (item == Py_True || item == Py_False) {
        *seen |= SEEN_BOOL;
        return put(w, item == Py_True ? "\x88" : "\x89", 1) < 0 ? -1 : 1;
    }
    if (type == &PyLong_Type) {
        int overflow = 0;
        long long value = PyLong_AsLongLongAndOverflow(item, &overflow);
        if (overflow)
            return 0;
        if (value == -1 && PyErr_Occurred())
            return -1;
        *seen |= SEEN_INT;
        char data[16];
        if (value >= -0x7fffffffLL - 1 && value <= 0x7fffffffLL) {
            uint32_t bits = (uint32_t)(int32_t)value;
            data[1] = (char)(bits & 0xff);
            data[2] = (char)((bits >> 8) & 0xff);
            data[3] = (char)((bits >> 16) & 0xff);
            data[4] = (char)((bits >> 24) & 0xff);
            if (data[4] != 0 || data[3] != 0) {
                data[0] = 'J'; /* BININT */
                return put(w, data, 5) < 0 ? -1 : 1;
            }
            if (data[2] != 0) {
                data[0] = 'M'; /* BININT2 */
                return put(w, data, 3) < 0 ? -1 : 1;
            }
            data[0] = 'K'; /* BININT1 */
            return put(w, data, 2) < 0 ? -1 : 1;
        }
        /* LONG1: the value's two's complement, little-endian, in (bits of |value|) / 8 + 1 bytes,
         * less one where a negative value's top byte is only sign. */
        uint64_t magnitude = value < 0 ? (uint64_t)0 - (uint64_t)value : (uint64_t)value;
        int nbits = 0;
        while (magnitude) {
            nbits++;
            magnitude >>= 1;
        }
        int nbytes = (nbits >> 3) + 1;
        uint64_t twos = (uint64_t)value;
        char body[9];
        for (int i = 0; i < nbytes; i++)
            body[i] = i < 8 ? (char)((twos >> (8 * i)) & 0xff) : (char)(value < 0 ? 0xff : 0);
        if (value < 0 && nbytes > 1 && (unsigned char)body[nbytes - 1] == 0xff && (body[nbytes - 2] & 0x80) != 0)
            nbytes--;
        char header[2] = {'\x8a', (char)nbytes}; /* LONG1 */
        return put(w, header, 2) < 0 || put(w, body, nbytes) < 0 ? -1 : 1;
    }
    if (type == &PyFloat_Type) {
        double value = PyFloat_AS_DOUBLE(item);
        *seen |= Py_IS_NAN(value) ? SEEN_NAN : SEEN_FLOAT;
        uint64_t bits;
        memcpy(&bits, &value, 8);
        char data[9];
        data[0] = 'G'; /* BINFLOAT, big-endian */
        for (int i = 0; i < 8; i++)
            data[1 + i] = (char)((bits >> (8 * (7 - i))) & 0xff);
        return put(w, data, 9) < 0 ? -1 : 1;
    }
    if (type == &PyUnicode_Type) {
        *seen |= SEEN_STR;
        if (PyUnicode_IS_COMPACT_ASCII(item) && PyUnicode_GET_LENGTH(item) <= 0xff) {
            /* The common case, kept short: its UTF-8 is its data, in one SHORT_BINUNICODE. */
            Py_ssize_t size = PyUnicode_GET_LENGTH(item);
            if (w->frame_start != -1 && w->len + 2 + size <= PyBytes_GET_SIZE(w->out)) {
                unsigned char *out = (unsigned char *)PyBytes_AS_STRING(w->out) + w->len;
                out[0] = 0x8c;
                out[1] = (unsigned char)size;
                memcpy(out + 2, PyUnicode_DATA(item), (size_t)size);
                w->len += 2 + size;
                return 1;
            }
        }
        Py_ssize_t size;
        const char *data = PyUnicode_AsUTF8AndSize(item, &size);
        if (data != NULL)
            return put_sized(w, '\x8c', 'X', '\x8d', data, size) < 0 ? -1 : 1;
        PyErr_Clear(); /* lone surrogates: as the pickler, "surrogatepass" */
        PyObject *encoded = PyUnicode_AsEncodedString(item, "utf-8", "surrogatepass");
        if (encoded == NULL)
            return -1;
        int status = put_sized(w, '\x8c', 'X', '\x8d', PyBytes_AS_STRING(encoded), PyBytes_GET_SIZE(encoded));
        Py_DECREF(encoded);
        return status < 0 ? -1 : 1;
    }
    if (type == &PyBytes_Type) {
        *seen |= SEEN_BYTES;
        return put_sized(w, 'C', 'B', '\x8e', PyBytes_AS_STRING(item), PyBytes_GET_SIZE(item)) < 0 ? -1 : 1;
    }
    return 0;
}

static PyObject *
atoms_stream(PyObject *module, PyObject *args)
{
    unsigned long long address;
    Py_ssize_t count;
    PyObject *write;
    if (!PyArg_ParseTuple(args, "KnO:stream", &address, &count, &write))
        return NULL;
    if (count < 0) {
        PyErr_SetString(PyExc_ValueError, "count must not be negative");
        return NULL;
    }
    PyObject **items = (PyObject **)(uintptr_t)address;
    PyObject *kept = NULL;
    Writer w = {NULL, 0, -1, 0, write};
    w.out = PyBytes_FromStringAndSize(NULL, 4 * FRAME_SIZE_TARGET);
    if (w.out == NULL)
        return NULL;
    if ((kept = PyList_New(count)) == NULL)
        goto error;
    int seen = 0, status = 1;
    if (put(&w, "\x80\x05", 2) < 0) /* PROTO 5, before framing starts */
        goto error;
    w.framing = 1;
    if (put(&w, "]", 1) < 0) /* EMPTY_LIST; fast mode memoizes nothing */
        goto error;
    Py_ssize_t done = 0;
    while (done < count) {
        if (count > 1 && put(&w, "(", 1) < 0) /* MARK: a list of one is a single APPEND */
            goto error;
        for (int batch = 0; batch < BATCHSIZE && done < count; batch++, done++) {
            /* Held before it is written: ``write`` may let go of the GIL, and another
             * thread could then replace the array's item and free it. */
            PyObject *item = items[done];
#if defined(__GNUC__)
            /* The items are scattered objects: ask for one a few ahead while this one is written. */
            if (done + PREFETCH_AHEAD < count)
                __builtin_prefetch(items[done + PREFETCH_AHEAD], 1);
#endif
            Py_INCREF(item);
            PyList_SET_ITEM(kept, done, item);
            status = put_item(&w, item, &seen);
            if (status <= 0)
                goto fail;
        }
        if (put(&w, count > 1 ? "e" : "a", 1) < 0) /* APPENDS, or APPEND */
            goto error;
    }
    if (put(&w, ".", 1) < 0) /* STOP */
        goto error;
    commit_frame(&w);
    if (flush(&w) < 0)
        goto error;
    Py_DECREF(w.out);
    /* The stream is of the array as it is now only if it still holds every item written. */
    for (Py_ssize_t i = 0; i < count; i++) {
        if (items[i] != PyList_GET_ITEM(kept, i)) {
            Py_DECREF(kept);
            Py_RETURN_NONE;
        }
    }
    return Py_BuildValue("(iN)", seen, kept);
fail:
    if (status == 0) {
        Py_DECREF(w.out);
        Py_XDECREF(kept);
        Py_RETURN_NONE;
    }
error:
    Py_XDECREF(w.out);
    Py_XDECREF(kept);
    return NULL;
}

static PyObject *
atoms_exact(PyObject *module, PyObject *args)
{
    unsigned long long address;
    Py_ssize_t count;
    if (!PyArg_ParseTuple(args, "Kn:exact", &address, &count))
        return NULL;
    PyObject **items = (PyObject **)(uintptr_t)address;
    /* Only types are read and nothing is called, so the GIL is held throughout and the array can't change. */
    for (Py_ssize_t i = 0; i < count; i++) {
#if defined(__GNUC__)
        if (i + PREFETCH_AHEAD < count)
            __builtin_prefetch(items[i + PREFETCH_AHEAD], 0);
#endif
        PyTypeObject *type = Py_TYPE(items[i]);
        if (type != &PyUnicode_Type && type != &PyBytes_Type && type != &PyLong_Type && type != &PyFloat_Type
            && type != &PyBool_Type && items[i] != Py_None)
            Py_RETURN_FALSE;
    }
    Py_RETURN_TRUE;
}

/* The general pickler's persistent_id (``_run._SetPickler``), called by the C pickler for every
 * object: here, no Python frame per object. ``seen`` maps id() to a number for each mutable object
 * met, in order; a second meeting returns ("shared", number). Exact sets and frozensets go to
 * ``sets``, which returns their canonical token. It does exactly what the Python method does.
 */
static PyObject *shared_name = NULL;

static PyObject *
atoms_persistent_id(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "persistent_id(seen, sets, obj)");
        return NULL;
    }
    PyObject *seen = args[0], *sets = args[1], *obj = args[2];
    PyTypeObject *type = Py_TYPE(obj);
    if (type == &PyDict_Type || type == &PyList_Type || type == &PySet_Type || type == &PyByteArray_Type) {
        if (!PyDict_CheckExact(seen)) {
            PyErr_SetString(PyExc_TypeError, "seen must be a dict");
            return NULL;
        }
        PyObject *key = PyLong_FromVoidPtr(obj);
        if (key == NULL)
            return NULL;
        PyObject *number = PyLong_FromSsize_t(PyDict_GET_SIZE(seen));
        if (number == NULL) {
            Py_DECREF(key);
            return NULL;
        }
        PyObject *first = PyDict_SetDefault(seen, key, number); /* borrowed */
        Py_DECREF(key);
        if (first == NULL) {
            Py_DECREF(number);
            return NULL;
        }
        if (first != number) { /* met before: its number is lower than every new one */
            Py_DECREF(number);
            return PyTuple_Pack(2, shared_name, first);
        }
        Py_DECREF(number);
        if (type == &PySet_Type)
            return PyObject_CallOneArg(sets, obj);
        Py_RETURN_NONE;
    }
    if (type == &PyFrozenSet_Type)
        return PyObject_CallOneArg(sets, obj);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"stream", atoms_stream, METH_VARARGS,
     "stream(address, count, write) -> (seen, items) | None\n\n"
     "Calls ``write`` (which must not keep the views it is given) with the protocol-5 fast-mode pickle of the list of the ``count`` objects whose\n"
     "pointers lie at ``address`` (a C-contiguous object array the caller holds and has bounds-checked),\n"
     "if all are exact str, bytes, int (64-bit), float, bool or None. ``seen`` is a bit set of the kinds\n"
     "met; ``items`` is the list pickled. None, part-way through, if an item is something else, or if\n"
     "the array no longer holds the items written (another thread): what was written is to be thrown away."},
    {"exact", atoms_exact, METH_VARARGS,
     "exact(address, count) -> bool\n\n"
     "True if each of the ``count`` objects whose pointers lie at ``address`` is an exact str, bytes,\n"
     "int (any size), float, bool or None."},
    {"persistent_id", (PyCFunction)(void (*)(void))atoms_persistent_id, METH_FASTCALL,
     "persistent_id(seen, sets, obj) -> None | (\"shared\", number) | set token\n\n"
     "``_run._SetPickler.persistent_id`` in C (see there)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_atoms", NULL, -1, methods};

PyMODINIT_FUNC
PyInit__atoms(void)
{
    shared_name = PyUnicode_InternFromString("shared");
    if (shared_name == NULL)
        return NULL;
    return PyModule_Create(&module);
}

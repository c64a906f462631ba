# Lets other Cython modules (the TLV packet scanner in _tlv.pyx) call the magic-word search directly.
cdef Py_ssize_t find_magic_in(const unsigned char* data, Py_ssize_t size,
                              Py_ssize_t start) noexcept nogil

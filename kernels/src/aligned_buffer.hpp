// A vector whose data is 64-byte aligned (one cache line, one zmm), grown but never shrunk.
// Internal to the kernels library (qgemm.cpp, fold_conv.cpp): per-thread scratch reused across
// calls. A plain std::vector is not enough: glibc serves large blocks by mmap at 16 bytes past a
// page boundary, so every 32- or 64-byte row of such a scratch would straddle two cache lines.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace prism {
namespace detail {

template <class T>
class AlignedBuffer {
 public:
  // At least count elements, 64-byte aligned; the contents are kept only while count does not
  // grow past the capacity.
  T* get(std::size_t count) {
    if (count > capacity_) {
      storage_.assign((count * sizeof(T) + 64 + sizeof(T) - 1) / sizeof(T), T());
      capacity_ = count;
    }
    auto p = reinterpret_cast<std::uintptr_t>(storage_.data());
    return reinterpret_cast<T*>((p + 63) & ~static_cast<std::uintptr_t>(63));
  }

 private:
  std::vector<T> storage_;
  std::size_t capacity_ = 0;
};

}  // namespace detail
}  // namespace prism

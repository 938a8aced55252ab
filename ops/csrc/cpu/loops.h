// Loops shared by the CPU kernels.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cstdint>

namespace roi_ops {

// The CPU's Exec for the sorted deterministic backward (roi_sorted.h): f(i)
// for every index, on every core. Each index writes its own outputs, so the
// split across threads changes nothing.
struct CpuExec {
  static at::TensorOptions options() {
    return at::TensorOptions().device(at::kCPU);
  }

  template <typename F>
  static void for_each(int64_t n, const F& f) {
    at::parallel_for(0, n, 256, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        f(i);
      }
    });
  }
};

// best[c] = max(best[c], values[c]), remembering `index` where values wins.
// Written with a mask instead of a branch so that the compiler vectorizes it
// across channels (it does for float; other types run it scalar).
template <typename scalar_t>
inline void max_into(
    const scalar_t* __restrict__ values,
    int index,
    scalar_t* __restrict__ best,
    int* __restrict__ best_index,
    int64_t n) {
  for (int64_t c = 0; c < n; ++c) {
    const scalar_t v = values[c], b = best[c];
    const int mask = -static_cast<int>(v > b);
    best[c] = b < v ? v : b;
    best_index[c] ^= (best_index[c] ^ index) & mask;
  }
}

} // namespace roi_ops

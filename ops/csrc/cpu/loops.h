// Loops shared by the CPU kernels.
#pragma once

#include <ATen/Parallel.h>

#include <cstdint>

#include "../roi_geometry.h"

namespace roi_ops {

// Sets out[i] = value(cell i) for every cell of an [N, C, H, W] tensor, in
// parallel: the deterministic gather backward, where each cell is written once.
template <typename T, typename F>
void parallel_over_cells(T* out, const RoiShape& s, const F& value) {
  at::parallel_for(0, s.batch * s.channels * s.height * s.width, 256, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      out[i] = value(unravel(i, s.channels, s.height, s.width));
    }
  });
}

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

// Non-maximum suppression: roi_ops::nms(boxes [K, 4], scores [K], iou_threshold)
// -> int64 indices of the boxes kept, by decreasing score. Greedy: a box is
// dropped when its IoU with a kept, higher-scoring box is above the threshold
// (torchvision's rule). The detector calls torchvision's NMS when it runs
// eagerly and this operator in exported programs, so that a program needs only
// this library; on a CUDA tensor it runs on a host copy (exported programs do
// one NMS per pyramid pass, on at most a few thousand boxes).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include <algorithm>
#include <numeric>
#include <vector>

namespace roi_ops {
namespace {

void check_nms_args(const at::Tensor& boxes, const at::Tensor& scores) {
  TORCH_CHECK_VALUE(
      boxes.dim() == 2 && boxes.size(1) == 4,
      "nms: boxes must be a [K, 4] tensor, got shape ", boxes.sizes());
  TORCH_CHECK_VALUE(
      scores.dim() == 1 && scores.size(0) == boxes.size(0),
      "nms: scores must be a [K] tensor for ", boxes.size(0), " boxes, got shape ",
      scores.sizes());
  TORCH_CHECK_TYPE(
      boxes.is_floating_point() && scores.is_floating_point(),
      "nms: boxes and scores must be floating point, got ", boxes.scalar_type(), " and ",
      scores.scalar_type());
}

template <typename T>
std::vector<int64_t> greedy(const T* boxes, const T* scores, int64_t count, double threshold) {
  std::vector<int64_t> order(count);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [scores](int64_t a, int64_t b) { return scores[a] > scores[b]; });
  std::vector<T> area(count);
  for (int64_t i = 0; i < count; ++i) {
    const T* b = boxes + 4 * i;
    area[i] = (b[2] - b[0]) * (b[3] - b[1]);
  }
  std::vector<char> removed(count, 0);
  std::vector<int64_t> keep;
  for (int64_t a = 0; a < count; ++a) {
    const int64_t i = order[a];
    if (removed[i]) {
      continue;
    }
    keep.push_back(i);
    const T* bi = boxes + 4 * i;
    for (int64_t c = a + 1; c < count; ++c) {
      const int64_t j = order[c];
      if (removed[j]) {
        continue;
      }
      const T* bj = boxes + 4 * j;
      const T w = std::max(T(0), std::min(bi[2], bj[2]) - std::max(bi[0], bj[0]));
      const T h = std::max(T(0), std::min(bi[3], bj[3]) - std::max(bi[1], bj[1]));
      const T inter = w * h;
      if (inter / (area[i] + area[j] - inter) > threshold) {
        removed[j] = 1;
      }
    }
  }
  return keep;
}

at::Tensor nms_cpu(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  check_nms_args(boxes, scores);
  const auto b = boxes.contiguous();
  const auto s = scores.to(boxes.scalar_type()).contiguous();
  std::vector<int64_t> keep;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, b.scalar_type(), "nms", [&] {
    using T = at::opmath_type<scalar_t>;
    const auto bt = b.to(c10::CppTypeToScalarType<T>::value);
    const auto st = s.to(c10::CppTypeToScalarType<T>::value);
    keep = greedy<T>(bt.data_ptr<T>(), st.data_ptr<T>(), b.size(0), iou_threshold);
  });
  auto out = at::empty({static_cast<int64_t>(keep.size())}, boxes.options().dtype(at::kLong));
  std::copy(keep.begin(), keep.end(), out.data_ptr<int64_t>());
  return out;
}

at::Tensor nms_on_host(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  check_nms_args(boxes, scores);
  return nms_cpu(boxes.cpu(), scores.cpu(), iou_threshold).to(boxes.device());
}

} // namespace

TORCH_LIBRARY_FRAGMENT(roi_ops, m) {
  m.def("nms(Tensor boxes, Tensor scores, float iou_threshold) -> Tensor");
}

TORCH_LIBRARY_IMPL(roi_ops, CPU, m) {
  m.impl("nms", TORCH_FN(nms_cpu));
}

TORCH_LIBRARY_IMPL(roi_ops, CUDA, m) {
  m.impl("nms", TORCH_FN(nms_on_host));
}

} // namespace roi_ops

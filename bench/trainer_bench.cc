#include "bench/trainer_bench.h"

#include <algorithm>
#include <chrono>

namespace peco::bench {
namespace {

void Sync(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize();
}

}  // namespace

double Median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

std::vector<double> TimeSteps(const torch::Device& device, int warmup, int steps,
                              const std::function<void()>& fn) {
  for (int i = 0; i < warmup; ++i) fn();
  Sync(device);
  std::vector<double> seconds;
  seconds.reserve(steps);
  for (int i = 0; i < steps; ++i) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    Sync(device);
    seconds.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return seconds;
}

double MatmulTflops(torch::ScalarType dtype, const torch::Device& device, int64_t n) {
  torch::NoGradGuard no_grad;
  const auto options = torch::TensorOptions().dtype(dtype).device(device);
  torch::Tensor a = torch::randn({n, n}, options), b = torch::randn({n, n}, options);
  torch::Tensor c = torch::empty({n, n}, options);
  const double seconds = Median(TimeSteps(device, 2, 5, [&] { torch::mm_out(c, a, b); }));
  return 2.0 * static_cast<double>(n) * n * n / seconds / 1e12;
}

int64_t DefaultMatmulSize(const torch::Device& device) { return device.is_cuda() ? 8192 : 2048; }

std::string ResultLine::ToJson(const std::function<void(JsonWriter&)>& extra) const {
  const double median = Median(seconds);
  double total = 0;
  for (double s : seconds) total += s;
  double rate = 0;
  if (rate_from_total && total > 0) {
    rate = static_cast<double>(batch) * static_cast<double>(seconds.size()) / total;
  } else if (median > 0) {
    rate = static_cast<double>(batch) / median;
  }
  JsonWriter w;
  w.Add("bench", bench)
      .Add("side", side)
      .Add("preset", preset)
      .Add("batch", batch)
      .Add("precision", precision)
      .Add("threads", threads)
      .Add("parameters", parameters)
      .Add("seconds", seconds)
      .Add("median_seconds", median)
      .Add("images_per_second", rate);
  if (extra) extra(w);
  return w.str();
}

}  // namespace peco::bench

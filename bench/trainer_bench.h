// Pieces shared by the trainer benchmarks (bench/*.cc built against peco_trainer): step timing,
// the machine's dense-matmul peak, and the one-line JSON result every benchmark program prints so
// that bench/run can set peco and the eager baseline side by side (bench/README.md, "Result
// lines").
//
// Thread-compatible: call from one thread. Benchmarks are programs, not library code: LibTorch
// errors (an unavailable device, out of memory) propagate as c10::Error and end the program.
#ifndef PECO_BENCH_TRAINER_BENCH_H_
#define PECO_BENCH_TRAINER_BENCH_H_

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/json_writer.h"

namespace peco::bench {

// The median of `values` (the mean of the middle two for an even count); 0 when empty.
double Median(std::vector<double> values);

// Calls `fn` `warmup` times untimed, then `steps` times, and returns the seconds of each timed
// call. `fn` must leave no queued work on the CPU (for example it reads a loss value); on CUDA
// each call is followed by a device synchronisation inside the timed region.
std::vector<double> TimeSteps(const torch::Device& device, int warmup, int steps,
                              const std::function<void()>& fn);

// Dense [n, n] x [n, n] matmul throughput in TFLOP/s for `dtype` on `device`: the median of 5
// timed products after 2 untimed ones.
double MatmulTflops(torch::ScalarType dtype, const torch::Device& device, int64_t n);

// The default matmul size for the peak: large enough to saturate the device.
int64_t DefaultMatmulSize(const torch::Device& device);

// The fields every result line carries (see bench/README.md). `seconds` holds one entry per timed
// step or batch.
struct ResultLine {
  std::string bench;  // mim_step | tokenizer_step | data_pipeline | e2e_pretrain | peak
  std::string side = "peco";
  std::string preset;
  int64_t batch = 0;
  std::string precision = "fp32";
  int threads = 0;
  int64_t parameters = 0;
  std::vector<double> seconds;
  // false: images_per_second = batch / median(seconds) (steps of even length); true: batch *
  // count / sum(seconds), for pipelines whose batches arrive in bursts.
  bool rate_from_total = false;

  // The JSON object, with the median and images/s filled in; `extra` adds fields.
  std::string ToJson(const std::function<void(JsonWriter&)>& extra = nullptr) const;
};

}  // namespace peco::bench

#endif  // PECO_BENCH_TRAINER_BENCH_H_

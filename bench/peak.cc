// The machine's dense-matmul peak, fp32 and bf16, on one device: the denominator of every MFU in
// bench/run's table. Prints one JSON line per precision (bench/trainer_bench.h) or Markdown.
//
// Usage: peco-bench-peak [--threads 0] [--device cpu|cuda] [--matmul_size 0 (auto)]
//          [--precision fp32|bf16|both] [--format markdown|json]
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "bench/trainer_bench.h"
#include "common/json_writer.h"
#include "trainer/engine/runtime.h"

namespace peco::trainer {
namespace {

int Main(int argc, char** argv) {
  ConfigureOpenMpWait(argv);
  int threads_requested = 0;
  int64_t n = 0;
  std::string device_name = "cpu", precision = "both", format = "markdown";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--threads") {
      threads_requested = std::atoi(value.c_str());
    } else if (flag == "--matmul_size") {
      n = std::atoll(value.c_str());
    } else if (flag == "--device" && (value == "cpu" || value == "cuda")) {
      device_name = value;
    } else if (flag == "--precision" && (value == "fp32" || value == "bf16" || value == "both")) {
      precision = value;
    } else if (flag == "--format" && (value == "markdown" || value == "json")) {
      format = value;
    } else {
      std::fprintf(stderr,
                   "bad flag or value: %s %s\nusage: peco-bench-peak [--threads N] "
                   "[--device cpu|cuda] [--matmul_size N] [--precision fp32|bf16|both] "
                   "[--format markdown|json]\n",
                   flag.c_str(), value.c_str());
      return 2;
    }
  }
  if (argc % 2 == 0) {
    std::fprintf(stderr, "%s: expected a value\n", argv[argc - 1]);
    return 2;
  }
  if (device_name == "cuda" && !torch::cuda::is_available()) {
    std::fprintf(stderr, "--device cuda: this LibTorch has no CUDA device\n");
    return 2;
  }
  const torch::Device device(device_name == "cuda" ? torch::kCUDA : torch::kCPU);
  const int threads = ConfigureThreads(threads_requested);
  if (n <= 0) n = bench::DefaultMatmulSize(device);
  if (format == "markdown") std::printf("| precision | matmul | TFLOP/s |\n|---|---|---|\n");
  for (const std::string p : {"fp32", "bf16"}) {
    if (precision != "both" && precision != p) continue;
    const double tflops =
        bench::MatmulTflops(p == "bf16" ? torch::kBFloat16 : torch::kFloat32, device, n);
    if (format == "json") {
      JsonWriter w;
      w.Add("bench", "peak")
          .Add("side", "peco")
          .Add("precision", p)
          .Add("threads", threads)
          .Add("device", device_name)
          .Add("matmul_size", n)
          .Add("tflops", tflops);
      std::printf("%s\n", w.str().c_str());
    } else {
      std::printf("| %s | %lldx%lld | %.3f |\n", p.c_str(), static_cast<long long>(n),
                  static_cast<long long>(n), tflops);
    }
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace
}  // namespace peco::trainer

int main(int argc, char** argv) { return peco::trainer::Main(argc, argv); }

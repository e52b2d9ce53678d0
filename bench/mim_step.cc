// Benchmark of the BEiT masked-image-modeling training step, as `peco-train pretrain` runs it:
// BeitMim forward with logits at masked positions only, cross-entropy against random targets,
// backward, global-norm gradient clipping at 3.0 and an AdamW step over BeitParamGroups. Data
// loading and the tokenizer are not timed. Masks hold a fixed number of random patches per image:
// BEiT's 75 of 196 at 224/16, otherwise round(0.4 N) (26 of 64 for the small preset).
//
// For each precision (fp32, bf16 autocast): `--warmup` untimed steps, then `--steps` timed ones;
// it prints the median step time, images/s and achieved TFLOP/s (3x BeitMimForwardFlops per
// image), and MFU against this machine's large-matmul peak of the same precision, measured in
// the same run. Output is Markdown, or with --format json one result line per precision
// (bench/trainer_bench.h) for bench/run.
//
// Usage: peco-bench-mim-step [--preset beit_base_patch16_224_8k_vocab|beit_small_fashion_mnist]
//          [--batch 8] [--steps 5] [--warmup 3] [--precision fp32|bf16|both] [--threads 0]
//          [--device cpu|cuda] [--matmul_size 0 (auto)] [--format markdown|json]
//          [--profile PREFIX (writes PREFIX.<precision>.json, a chrome trace of one more step;
//                             bench/trace_summary.py summarises it)]
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "bench/trainer_bench.h"
#include "common/json_writer.h"
#include "trainer/engine/foreach_optim.h"
#include "trainer/engine/runtime.h"
#include "trainer/models/beit_config.h"
#include "trainer/models/beit_optim.h"
#include "trainer/models/beit_vit.h"
#include "trainer/tasks/pretrain_task.h"

namespace peco::trainer {
namespace {

struct Options {
  std::string preset = "beit_base_patch16_224_8k_vocab";
  int64_t batch = 8;
  int steps = 5;
  int warmup = 3;
  std::string precision = "both";
  int threads = 0;
  std::string device = "cpu";
  int64_t matmul_size = 0;
  std::string format = "markdown";
  std::string profile;  // chrome trace of one extra step per precision
};

constexpr char kUsage[] =
    "usage: peco-bench-mim-step [--preset beit_base_patch16_224_8k_vocab|"
    "beit_small_fashion_mnist] [--batch N] [--steps N] [--warmup N] "
    "[--precision fp32|bf16|both] [--threads N] [--device cpu|cuda] [--matmul_size N] "
    "[--format markdown|json] [--profile TRACE_PREFIX]\n";

bool ParseOptions(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h" || i + 1 >= argc) return false;
    const std::string value = argv[++i];
    char* end = nullptr;
    const long long number = std::strtoll(value.c_str(), &end, 10);
    const bool numeric = end != value.c_str() && *end == '\0' && number >= 0;
    if (flag == "--preset") {
      o->preset = value;
    } else if (flag == "--precision") {
      o->precision = value;
    } else if (flag == "--device") {
      o->device = value;
    } else if (flag == "--format" && (value == "markdown" || value == "json")) {
      o->format = value;
    } else if (flag == "--profile") {
      o->profile = value;
    } else if (numeric && flag == "--batch" && number > 0) {
      o->batch = number;
    } else if (numeric && flag == "--steps" && number > 0) {
      o->steps = static_cast<int>(number);
    } else if (numeric && flag == "--warmup") {
      o->warmup = static_cast<int>(number);
    } else if (numeric && flag == "--threads") {
      o->threads = static_cast<int>(number);
    } else if (numeric && flag == "--matmul_size") {
      o->matmul_size = number;
    } else {
      std::fprintf(stderr, "bad flag or value: %s %s\n", flag.c_str(), value.c_str());
      return false;
    }
  }
  if (o->preset != "beit_base_patch16_224_8k_vocab" && o->preset != "beit_small_fashion_mnist") {
    std::fprintf(stderr, "--preset: unknown preset %s\n", o->preset.c_str());
    return false;
  }
  if (o->precision != "fp32" && o->precision != "bf16" && o->precision != "both") {
    std::fprintf(stderr, "--precision: expected fp32, bf16 or both\n");
    return false;
  }
  if (o->device != "cpu" && o->device != "cuda") {
    std::fprintf(stderr, "--device: expected cpu or cuda\n");
    return false;
  }
  return true;
}

struct StepResult {
  std::vector<double> seconds;  // per timed step
  double flops_per_image = 0;   // 3x BeitMimForwardFlops: forward + backward
  int64_t parameters = 0;
  double final_loss = 0;
};

// Times the MIM step of `config` at `batch` on `device`, under bf16 autocast when `bf16`.
StepResult TimeMimStep(const BeitVitConfig& config, const Options& o, const torch::Device& device,
                       bool bf16) {
  torch::manual_seed(0);
  BeitMim model(config);
  model->to(device);
  model->train();
  const auto base = torch::optim::AdamWOptions(1.5e-3).betas({0.9, 0.999}).eps(1e-8);
  std::vector<BeitParamGroup> groups =
      BeitParamGroups(*model, config.depth, /*weight_decay=*/0.05, std::nullopt);
  ForeachAdamW optimizer(ToAdamWParamGroups(groups, base), base);
  const std::vector<torch::Tensor> params = model->parameters();
  int64_t parameter_count = 0;
  for (const torch::Tensor& p : params) parameter_count += p.numel();

  const int64_t n = config.num_patches();
  // BEiT's 75 of 196 (~40%); the small preset's 26 of 64 (configs/pretrain_small.yaml).
  const int64_t masked = n == 196 ? 75 : (n * 2 + 2) / 5;
  torch::Tensor images = torch::randn({o.batch, 3, config.img_size, config.img_size});
  // Exactly `masked` random patches per image.
  torch::Tensor order = torch::rand({o.batch, n}).argsort(/*dim=*/int64_t{1});
  torch::Tensor masks = order < masked;
  torch::Tensor targets = torch::randint(config.vocab_size, {o.batch * masked}, torch::kLong);
  images = images.to(device);
  masks = masks.to(device);
  targets = targets.to(device);

  double loss_value = 0;
  auto step = [&] {
    optimizer.zero_grad();
    torch::Tensor logits;
    {
      AutocastGuard autocast(bf16, device);
      logits = model->forward(images, masks);
    }
    torch::Tensor loss = torch::nn::functional::cross_entropy(logits.to(torch::kFloat32), targets);
    loss.backward();
    ClipGradNorm(params, 3.0);
    optimizer.step();
    loss_value = loss.item<double>();
  };
  StepResult result;
  result.seconds = bench::TimeSteps(device, o.warmup, o.steps, step);
  if (!o.profile.empty()) {
    // One more step under LibTorch's profiler; bench/trace_summary.py reads the trace.
    const std::string path = o.profile + (bf16 ? ".bf16.json" : ".fp32.json");
    torch::autograd::profiler::RecordProfile record(path);
    step();
  }
  result.final_loss = loss_value;
  result.flops_per_image = 3.0 * BeitMimForwardFlops(config, masked);
  result.parameters = parameter_count;
  return result;
}

int Main(int argc, char** argv) {
  // As peco-train: how idle OpenMP threads wait (trainer/engine/runtime.h).
  ConfigureOpenMpWait(argv);
  Options o;
  if (!ParseOptions(argc, argv, &o)) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  if (o.device == "cuda" && !torch::cuda::is_available()) {
    std::fprintf(stderr, "--device cuda: this LibTorch has no CUDA device\n");
    return 2;
  }
  const torch::Device device(o.device == "cuda" ? torch::kCUDA : torch::kCPU);
  const int threads = ConfigureThreads(o.threads);
  const BeitVitConfig config = o.preset == "beit_small_fashion_mnist"
                                   ? BeitSmallFashionMnistConfig()
                                   : BeitBasePatch16Config();
  std::vector<std::string> precisions;
  if (o.precision != "bf16") precisions.push_back("fp32");
  if (o.precision != "fp32") precisions.push_back("bf16");

  const int64_t matmul_n = o.matmul_size > 0 ? o.matmul_size : bench::DefaultMatmulSize(device);
  std::map<std::string, double> peak;
  for (const std::string& p : precisions) {
    peak[p] =
        bench::MatmulTflops(p == "bf16" ? torch::kBFloat16 : torch::kFloat32, device, matmul_n);
  }
  if (o.format == "json") {
    for (const std::string& p : precisions) {
      const StepResult r = TimeMimStep(config, o, device, p == "bf16");
      bench::ResultLine line;
      line.bench = "mim_step";
      line.preset = o.preset;
      line.batch = o.batch;
      line.precision = p;
      line.threads = threads;
      line.parameters = r.parameters;
      line.seconds = r.seconds;
      std::printf("%s\n", line.ToJson([&](JsonWriter& w) {
                                w.Add("flops_per_image", r.flops_per_image)
                                    .Add("matmul_peak_tflops", peak[p])
                                    .Add("final_loss", r.final_loss)
                                    .Add("device", o.device);
                              })
                              .c_str());
      std::fflush(stdout);
    }
    return 0;
  }

  std::printf(
      "MIM train step: %s, batch %lld, %d warm-up + %d timed steps (median), %d threads, "
      "%s\n\n",
      o.preset.c_str(), static_cast<long long>(o.batch), o.warmup, o.steps, threads,
      o.device.c_str());
  std::printf(
      "| precision | matmul peak TFLOP/s (%lldx%lld) | s/step | images/s | TFLOP/s | MFU "
      "| loss |\n",
      static_cast<long long>(matmul_n), static_cast<long long>(matmul_n));
  std::printf("|---|---|---|---|---|---|---|\n");
  for (const std::string& p : precisions) {
    const StepResult r = TimeMimStep(config, o, device, p == "bf16");
    const double seconds = bench::Median(r.seconds);
    const double tflops = r.flops_per_image * static_cast<double>(o.batch) / seconds / 1e12;
    std::printf("| %s | %.3f | %.3f | %.2f | %.3f | %.1f%% | %.3f |\n", p.c_str(), peak[p], seconds,
                static_cast<double>(o.batch) / seconds, tflops, 100.0 * tflops / peak[p],
                r.final_loss);
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace
}  // namespace peco::trainer

int main(int argc, char** argv) { return peco::trainer::Main(argc, argv); }

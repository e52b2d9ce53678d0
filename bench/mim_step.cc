// Benchmark of the BEiT masked-image-modeling training step, as `peco-train pretrain` runs it:
// BeitMim forward with logits at masked positions only, cross-entropy against random targets,
// backward, global-norm gradient clipping at 3.0 and an AdamW step over BeitParamGroups. Data
// loading and the tokenizer are not timed. Masks hold a fixed number of random patches per image:
// BEiT's 75 of 196 at 224/16, otherwise round(0.4 N) (26 of 64 for the small preset).
//
// For each precision (fp32, bf16 autocast): `--warmup` untimed steps, then `--steps` timed ones;
// it prints the median step time, images/s and achieved TFLOP/s (3x BeitMimForwardFlops per
// image), and MFU against this machine's large-matmul peak of the same precision, measured in
// the same run. Output is Markdown.
//
// Usage: peco-bench-mim-step [--preset beit_base_patch16_224_8k_vocab|beit_small_fashion_mnist]
//          [--batch 8] [--steps 5] [--warmup 3] [--precision fp32|bf16|both] [--threads 0]
//          [--device cpu|cuda] [--matmul_size 0 (auto)]
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

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
};

constexpr char kUsage[] =
    "usage: peco-bench-mim-step [--preset beit_base_patch16_224_8k_vocab|"
    "beit_small_fashion_mnist] [--batch N] [--steps N] [--warmup N] "
    "[--precision fp32|bf16|both] [--threads N] [--device cpu|cuda] [--matmul_size N]\n";

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

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void Sync(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize();
}

// Median seconds of `fn` over `reps` calls after `warmup` calls; `fn` must leave no queued work
// on the CPU (it reads a value) and is synchronised on CUDA.
double TimeMedian(const torch::Device& device, int warmup, int reps,
                  const std::function<void()>& fn) {
  for (int i = 0; i < warmup; ++i) fn();
  Sync(device);
  std::vector<double> seconds;
  for (int i = 0; i < reps; ++i) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    Sync(device);
    seconds.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return Median(seconds);
}

// Dense matmul TFLOP/s of [n, n] x [n, n] in `dtype` on `device`.
double MatmulTflops(torch::ScalarType dtype, const torch::Device& device, int64_t n) {
  torch::NoGradGuard no_grad;
  const auto options = torch::TensorOptions().dtype(dtype).device(device);
  torch::Tensor a = torch::randn({n, n}, options), b = torch::randn({n, n}, options);
  torch::Tensor c;
  const double seconds = TimeMedian(device, 2, 5, [&] { c = torch::mm(a, b); });
  return 2.0 * n * n * n / seconds / 1e12;
}

struct StepResult {
  double seconds = 0;
  double tflops = 0;
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
  torch::optim::AdamW optimizer(ToAdamWParamGroups(groups, base), base);
  const std::vector<torch::Tensor> params = model->parameters();

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
    torch::nn::utils::clip_grad_norm_(params, 3.0);
    optimizer.step();
    loss_value = loss.item<double>();
  };
  StepResult result;
  result.seconds = TimeMedian(device, o.warmup, o.steps, step);
  result.final_loss = loss_value;
  result.tflops = 3.0 * BeitMimForwardFlops(config, masked) * static_cast<double>(o.batch) /
                  result.seconds / 1e12;
  return result;
}

int Main(int argc, char** argv) {
  // As peco-train: idle OpenMP threads wait passively unless OMP_WAIT_POLICY is set.
  EnsurePassiveOpenMpWait(argv);
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

  const int64_t matmul_n = o.matmul_size > 0 ? o.matmul_size : (device.is_cuda() ? 8192 : 2048);
  std::map<std::string, double> peak;
  for (const std::string& p : precisions) {
    peak[p] = MatmulTflops(p == "bf16" ? torch::kBFloat16 : torch::kFloat32, device, matmul_n);
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
    std::printf("| %s | %.3f | %.3f | %.2f | %.3f | %.1f%% | %.3f |\n", p.c_str(), peak[p],
                r.seconds, static_cast<double>(o.batch) / r.seconds, r.tflops,
                100.0 * r.tflops / peak[p], r.final_loss);
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace
}  // namespace peco::trainer

int main(int argc, char** argv) { return peco::trainer::Main(argc, argv); }

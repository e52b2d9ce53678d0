// Data-pipeline throughput of peco-train's loader on a folder of JPEG photographs: the pretrain
// job's data path exactly as `peco-train pretrain` builds it from a config (ImageFolder decode
// with libjpeg-turbo, one RandomResizedCrop box resized to the ViT view and the tokenizer view,
// flip, colour jitter, normalisation, batches assembled in place by the loader threads). The
// model is not run: the timed loop only takes batches, so the rate is what the loader sustains.
//
// Usage: peco-bench-data-pipeline --path DIR [--config configs/pretrain_paper.yaml]
//          [--batch 64] [--threads 2] [--workers 0 (= threads)] [--warmup 2] [--steps 30]
//          [--second_size 0 (= the ViT view's size)] [--format markdown|json]
// DIR is an ImageFolder tree (class sub-folders of .jpg files), e.g. from
// bench/baseline/make_jpegs.py.
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "bench/trainer_bench.h"
#include "common/json_writer.h"
#include "trainer/data/loader.h"
#include "trainer/engine/runtime.h"
#include "trainer/tasks/data_config.h"
#include "trainer/tasks/pretrain_config.h"

namespace peco::trainer {
namespace {

struct Options {
  std::string path;
  std::string config = "configs/pretrain_paper.yaml";
  int64_t batch = 64;
  int threads = 2;
  int workers = 0;
  int warmup = 2;
  int steps = 30;
  int second_size = 0;
  std::string format = "markdown";
};

constexpr char kUsage[] =
    "usage: peco-bench-data-pipeline --path DIR [--config FILE.yaml] [--batch N] [--threads N] "
    "[--workers N] [--warmup N] [--steps N] [--second_size N] [--format markdown|json]\n";

bool ParseOptions(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h" || i + 1 >= argc) return false;
    const std::string value = argv[++i];
    char* end = nullptr;
    const long long number = std::strtoll(value.c_str(), &end, 10);
    const bool numeric = end != value.c_str() && *end == '\0' && number >= 0;
    if (flag == "--path") {
      o->path = value;
    } else if (flag == "--config") {
      o->config = value;
    } else if (flag == "--format" && (value == "markdown" || value == "json")) {
      o->format = value;
    } else if (numeric && flag == "--batch" && number > 0) {
      o->batch = number;
    } else if (numeric && flag == "--threads" && number > 0) {
      o->threads = static_cast<int>(number);
    } else if (numeric && flag == "--workers") {
      o->workers = static_cast<int>(number);
    } else if (numeric && flag == "--warmup") {
      o->warmup = static_cast<int>(number);
    } else if (numeric && flag == "--steps" && number > 0) {
      o->steps = static_cast<int>(number);
    } else if (numeric && flag == "--second_size") {
      o->second_size = static_cast<int>(number);
    } else {
      std::fprintf(stderr, "bad flag or value: %s %s\n", flag.c_str(), value.c_str());
      return false;
    }
  }
  if (o->path.empty()) {
    std::fprintf(stderr, "--path: expected an ImageFolder directory of JPEG files\n");
    return false;
  }
  return true;
}

int Main(int argc, char** argv) {
  ConfigureOpenMpWait(argv);
  Options o;
  if (!ParseOptions(argc, argv, &o)) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  // The loader threads do the work; LibTorch's own pool only assembles nothing here.
  const int threads = ConfigureThreads(o.threads);
  std::ifstream in(o.config);
  if (!in) {
    std::fprintf(stderr, "--config: cannot read %s\n", o.config.c_str());
    return 2;
  }
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<PretrainJobConfig> config =
      ParsePretrainConfig(text.str(), o.config, /*check_paths=*/false);
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  DataConfig data = config->data;
  data.source = "image_folder";
  data.path = o.path;
  data.loader.batch_size = o.batch;
  data.loader.num_threads = o.workers > 0 ? o.workers : threads;
  // As many batches in flight as threads: each thread has work, none is decoded far ahead.
  data.loader.prefetch_batches = data.loader.num_threads;
  const int vit_size = static_cast<int>(config->model.img_size);
  data.loader.transform.output_sizes = {vit_size, o.second_size > 0 ? o.second_size : vit_size};

  absl::StatusOr<std::shared_ptr<const Dataset>> dataset = OpenDataset(data, config->seed);
  if (!dataset.ok()) {
    std::fprintf(stderr, "%s\n", std::string(dataset.status().message()).c_str());
    return 2;
  }
  absl::StatusOr<std::unique_ptr<DataLoader>> loader =
      DataLoader::Create(*dataset, data.loader, LoaderPosition{});
  if (!loader.ok()) {
    std::fprintf(stderr, "%s\n", std::string(loader.status().message()).c_str());
    return 2;
  }
  bool failed = false;
  const std::vector<double> seconds =
      bench::TimeSteps(torch::Device(torch::kCPU), o.warmup, o.steps, [&] {
        absl::StatusOr<Batch> batch = (*loader)->Next();
        if (!batch.ok()) failed = true;
      });
  if (failed) {
    std::fprintf(stderr, "the loader failed to produce a batch (see the log above)\n");
    return 1;
  }
  bench::ResultLine line;
  line.bench = "data_pipeline";
  line.preset = o.config;
  line.batch = o.batch;
  line.threads = threads;
  line.seconds = seconds;
  line.rate_from_total = true;  // batches arrive in bursts as the loader threads finish them
  if (o.format == "json") {
    std::printf("%s\n", line.ToJson([&](JsonWriter& w) {
                              w.Add("workers", data.loader.num_threads)
                                  .Add("images", (*dataset)->size())
                                  .Add("sizes",
                                       std::vector<int64_t>{vit_size,
                                                            data.loader.transform.output_sizes[1]});
                            })
                            .c_str());
  } else {
    double total = 0;
    for (double s : seconds) total += s;
    std::printf("| loader threads | batch | views | batches timed | images/s |\n");
    std::printf("|---|---|---|---|---|\n| %d | %lld | %d + %d | %d | %.1f |\n",
                data.loader.num_threads, static_cast<long long>(o.batch), vit_size,
                data.loader.transform.output_sizes[1], o.steps,
                static_cast<double>(o.batch) * o.steps / total);
  }
  return 0;
}

}  // namespace
}  // namespace peco::trainer

int main(int argc, char** argv) { return peco::trainer::Main(argc, argv); }

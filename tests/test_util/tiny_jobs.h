// Tiny job configs and scratch directories for process-level trainer tests: a tokenizer and a
// BEiT pre-training job on 16x16 Fashion-MNIST crops that fit each other (an 8x8 token grid and
// patch grid, 64 codes), small enough to train in seconds on two cores.
//
// Header-only; thread-compatible.
#ifndef PECO_TESTS_TEST_UTIL_TINY_JOBS_H_
#define PECO_TESTS_TEST_UTIL_TINY_JOBS_H_

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace peco::testing {

// A fresh (emptied) directory <tmp>/<suite>_<pid>/<name>.
inline std::string TempDir(const std::string& suite, const std::string& name) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / (suite + "_" + std::to_string(::getpid())) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

// Writes `yaml` to `dir`/`name` and returns the path.
inline std::string WriteConfig(const std::string& dir, const std::string& name,
                               const std::string& yaml) {
  const std::string path = dir + "/" + name;
  std::ofstream(path) << yaml;
  return path;
}

// A tiny tokenizer on 16x16 crops: f2, so an 8x8 token grid, 64 codes; `max_steps` steps and the
// `loss` section given (no perceptual loss by default); the held-out evaluation at the end reads
// 64 test images.
inline std::string TinyTokenizerConfig(const std::string& output_dir, int seed,
                                       const std::string& loss = "{perceptual_weight: 0}",
                                       int max_steps = 20) {
  return "kind: tokenizer\nseed: " + std::to_string(seed) + R"(
threads: 2
data: {source: fashion_mnist, path: /usr/share/datasets/fashion-mnist, image_size: 16,
       batch_size: 8, num_workers: 2, prefetch: 4}
transform: {scale_min: 0.7}
model: {ch: 32, ch_mult: [1, 2], num_res_blocks: 1, attn_resolutions: [8], z_channels: 32,
        n_embed: 64, embed_dim: 16}
loss: )" +
         loss + R"(
optim: {lr: 2.0e-3, warmup_steps: 2}
eval: {max_images: 64}
train: {max_steps: )" +
         std::to_string(max_steps) +
         ", log_every: 10, checkpoint_every: 1000, output_dir: " + output_dir + "}\n";
}

// A tiny BEiT on 16x16 crops: patch 2, so an 8x8 patch grid, vocabulary 64, 2 blocks.
inline std::string TinyPretrainConfig(const std::string& output_dir, const std::string& tokenizer,
                                      int max_steps, int batch_size = 16, double drop_path = 0.1) {
  return R"(kind: pretrain
seed: 5
threads: 2
data: {source: fashion_mnist, path: /usr/share/datasets/fashion-mnist, image_size: 16,
       batch_size: )" +
         std::to_string(batch_size) + R"(, num_workers: 2, prefetch: 4}
transform: {scale_min: 0.7}
model: {preset: beit_small_fashion_mnist, img_size: 16, patch_size: 2, embed_dim: 32, depth: 2,
        num_heads: 2, vocab_size: 64, drop_path_rate: )" +
         std::to_string(drop_path) + R"(}
tokenizer: {checkpoint: )" +
         tokenizer + R"(}
masking: {num_masking_patches: 26, min_num_patches: 4}
optim: {lr: 2.0e-3, min_lr: 1.0e-4, warmup_steps: 5}
train: {max_steps: )" +
         std::to_string(max_steps) +
         ", log_every: 1, checkpoint_every: 1000, output_dir: " + output_dir + "}\n";
}

}  // namespace peco::testing

#endif  // PECO_TESTS_TEST_UTIL_TINY_JOBS_H_

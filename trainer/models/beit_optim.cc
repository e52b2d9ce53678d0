#include "trainer/models/beit_optim.h"

#include <cmath>
#include <map>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace peco::trainer {

int64_t BeitLayerId(absl::string_view name, int64_t depth) {
  if (name == "cls_token" || name == "mask_token" || name == "pos_embed") return 0;
  if (absl::StartsWith(name, "patch_embed")) return 0;
  if (absl::StartsWith(name, "blocks.")) {
    absl::string_view rest = name.substr(7);
    int64_t block = 0;
    if (absl::SimpleAtoi(rest.substr(0, rest.find('.')), &block)) return block + 1;
  }
  return depth + 1;
}

bool BeitSkipsWeightDecay(absl::string_view name, at::IntArrayRef sizes) {
  return sizes.size() == 1 || absl::EndsWith(name, ".bias") || name == "pos_embed" ||
         name == "cls_token";
}

std::vector<BeitParamGroup> BeitParamGroups(const torch::nn::Module& model, int64_t depth,
                                            double weight_decay,
                                            std::optional<double> layer_decay) {
  std::vector<BeitParamGroup> groups;
  std::map<std::string, size_t> by_name;
  for (const auto& item : model.named_parameters()) {
    const torch::Tensor& p = item.value();
    if (!p.requires_grad()) continue;
    const bool skip = BeitSkipsWeightDecay(item.key(), p.sizes());
    std::string name = skip ? "no_decay" : "decay";
    double scale = 1.0;
    if (layer_decay.has_value()) {
      const int64_t id = BeitLayerId(item.key(), depth);
      name = absl::StrCat("layer_", id, "_", name);
      scale = std::pow(*layer_decay, static_cast<double>(depth + 1 - id));
    }
    auto [it, inserted] = by_name.emplace(name, groups.size());
    if (inserted) {
      BeitParamGroup group;
      group.name = name;
      group.weight_decay = skip ? 0.0 : weight_decay;
      group.lr_scale = scale;
      groups.push_back(std::move(group));
    }
    groups[it->second].param_names.push_back(item.key());
    groups[it->second].params.push_back(p);
  }
  return groups;
}

std::vector<torch::optim::OptimizerParamGroup> ToAdamWParamGroups(
    const std::vector<BeitParamGroup>& groups, const torch::optim::AdamWOptions& base) {
  std::vector<torch::optim::OptimizerParamGroup> out;
  out.reserve(groups.size());
  for (const BeitParamGroup& group : groups) {
    auto options = std::make_unique<torch::optim::AdamWOptions>(base);
    options->weight_decay(group.weight_decay);
    options->lr(base.lr() * group.lr_scale);
    out.emplace_back(group.params, std::move(options));
  }
  return out;
}

}  // namespace peco::trainer

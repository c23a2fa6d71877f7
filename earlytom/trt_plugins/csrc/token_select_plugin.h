// EarlyTomTokenSelect: the TensorRT IPluginV3 for the ONNX node earlytom::EarlyTomTokenSelect.
//
// Inputs:  0 features (T, P, C) FP16|FP32, 1 scores (T, P) FP32, 2 frame_kind (T,) INT64,
//          3 budget (2,) INT64 = (k_d, k_s), 4 token_slots (N,) INT64 (only its length is read).
// Outputs: 0 tokens (N, C) as features, 1 token_index (N, 2) INT64.
// Every output shape is a function of input shapes (N is token_slots' length): no size tensor.
#pragma once

#include <NvInferRuntime.h>

namespace earlytom
{

constexpr char const* kTokenSelectName = "EarlyTomTokenSelect";
constexpr char const* kTokenSelectVersion = "1";
constexpr char const* kTokenSelectNamespace = "earlytom";

class TokenSelectPlugin final : public nvinfer1::IPluginV3,
                                public nvinfer1::IPluginV3OneCore,
                                public nvinfer1::IPluginV3OneBuild,
                                public nvinfer1::IPluginV3OneRuntime
{
public:
    TokenSelectPlugin() = default;
    ~TokenSelectPlugin() override = default;

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild
    int32_t getNbOutputs() const noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
        nvinfer1::DimsExprs const* shapeInputs, int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs,
        int32_t nbOutputs, nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    nvinfer1::PluginFieldCollection mFields{0, nullptr}; // the op has no attributes to carry
};

class TokenSelectCreator final : public nvinfer1::IPluginCreatorV3One
{
public:
    TokenSelectCreator() = default;

    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

private:
    // No fields: the ONNX parser's plugin_namespace/plugin_version attributes only pick the creator.
    nvinfer1::PluginFieldCollection mFields{0, nullptr};
};

} // namespace earlytom

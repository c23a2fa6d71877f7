// EarlyTomTokenSelect IPluginV3: shapes, types and formats for the builder, the kernel for enqueue.
#include "token_select_plugin.h"

#include "token_select_kernel.cuh"
#include "token_select_launch.h"

#include <new>

namespace earlytom
{
namespace
{

using nvinfer1::DataType;
using nvinfer1::TensorFormat;

constexpr int32_t kInputs = 5;
constexpr int32_t kOutputs = 2;
enum Input : int32_t
{
    kFeatures = 0,
    kScores = 1,
    kFrameKind = 2,
    kBudget = 3,
    kTokenSlots = 4
};

int64_t elementSize(DataType type)
{
    return type == DataType::kHALF ? 2 : 4;
}

} // namespace

nvinfer1::IPluginCapability* TokenSelectPlugin::getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
    case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
    case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

nvinfer1::IPluginV3* TokenSelectPlugin::clone() noexcept
{
    return new (std::nothrow) TokenSelectPlugin();
}

char const* TokenSelectPlugin::getPluginName() const noexcept
{
    return kTokenSelectName;
}

char const* TokenSelectPlugin::getPluginVersion() const noexcept
{
    return kTokenSelectVersion;
}

char const* TokenSelectPlugin::getPluginNamespace() const noexcept
{
    return kTokenSelectNamespace;
}

int32_t TokenSelectPlugin::getNbOutputs() const noexcept
{
    return kOutputs;
}

int32_t TokenSelectPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (nbInputs != kInputs || nbOutputs != kOutputs)
    {
        return -1;
    }
    outputTypes[0] = inputTypes[kFeatures];
    outputTypes[1] = DataType::kINT64;
    return 0;
}

int32_t TokenSelectPlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
    nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/, nvinfer1::DimsExprs* outputs,
    int32_t nbOutputs, nvinfer1::IExprBuilder& exprBuilder) noexcept
{
    if (nbInputs != kInputs || nbOutputs != kOutputs || inputs[kFeatures].nbDims != 3
        || inputs[kTokenSlots].nbDims != 1)
    {
        return -1;
    }
    nvinfer1::IDimensionExpr const* selected = inputs[kTokenSlots].d[0]; // N
    outputs[0].nbDims = 2;
    outputs[0].d[0] = selected;
    outputs[0].d[1] = inputs[kFeatures].d[2]; // C
    outputs[1].nbDims = 2;
    outputs[1].d[0] = selected;
    outputs[1].d[1] = exprBuilder.constant(2);
    return 0;
}

bool TokenSelectPlugin::supportsFormatCombination(
    int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (nbInputs != kInputs || nbOutputs != kOutputs || pos < 0 || pos >= kInputs + kOutputs)
    {
        return false;
    }
    nvinfer1::PluginTensorDesc const& desc = inOut[pos].desc;
    if (desc.format != TensorFormat::kLINEAR)
    {
        return false;
    }
    switch (pos)
    {
    case kFeatures: return desc.type == DataType::kHALF || desc.type == DataType::kFLOAT;
    case kScores: return desc.type == DataType::kFLOAT;
    case kFrameKind:
    case kBudget:
    case kTokenSlots: return desc.type == DataType::kINT64;
    case kInputs: return desc.type == inOut[kFeatures].desc.type; // tokens
    default: return desc.type == DataType::kINT64;                // token_index
    }
}

int32_t TokenSelectPlugin::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    if (nbInputs != kInputs || nbOutputs != kOutputs)
    {
        return -1;
    }
    // The kernel keeps one frame's scores, flags and ranks in shared memory.
    int64_t const tokensPerFrame = in[kFeatures].max.d[1];
    return tokensPerFrame > kTokenSelectMaxTokensPerFrame ? -1 : 0;
}

int32_t TokenSelectPlugin::onShapeChange(nvinfer1::PluginTensorDesc const* /*in*/, int32_t nbInputs,
    nvinfer1::PluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    return nbInputs == kInputs && nbOutputs == kOutputs ? 0 : -1;
}

int32_t TokenSelectPlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
    nvinfer1::PluginTensorDesc const* /*outputDesc*/, void const* const* inputs, void* const* outputs,
    void* /*workspace*/, cudaStream_t stream) noexcept
{
    nvinfer1::Dims const& features = inputDesc[kFeatures].dims; // (T, P, C)
    int64_t const rowBytes = features.d[2] * elementSize(inputDesc[kFeatures].type);
    cudaError_t const status = launchTokenSelect(inputs[kFeatures], static_cast<float const*>(inputs[kScores]),
        static_cast<int64_t const*>(inputs[kFrameKind]), static_cast<int64_t const*>(inputs[kBudget]), features.d[0],
        features.d[1], rowBytes, inputDesc[kTokenSlots].dims.d[0], outputs[0], static_cast<int64_t*>(outputs[1]),
        stream);
    return status == cudaSuccess ? 0 : -1;
}

nvinfer1::IPluginV3* TokenSelectPlugin::attachToContext(nvinfer1::IPluginResourceContext* /*context*/) noexcept
{
    return clone();
}

nvinfer1::PluginFieldCollection const* TokenSelectPlugin::getFieldsToSerialize() noexcept
{
    return &mFields;
}

nvinfer1::IPluginV3* TokenSelectCreator::createPlugin(
    char const* /*name*/, nvinfer1::PluginFieldCollection const* /*fc*/, nvinfer1::TensorRTPhase /*phase*/) noexcept
{
    return new (std::nothrow) TokenSelectPlugin();
}

nvinfer1::PluginFieldCollection const* TokenSelectCreator::getFieldNames() noexcept
{
    return &mFields;
}

char const* TokenSelectCreator::getPluginName() const noexcept
{
    return kTokenSelectName;
}

char const* TokenSelectCreator::getPluginVersion() const noexcept
{
    return kTokenSelectVersion;
}

char const* TokenSelectCreator::getPluginNamespace() const noexcept
{
    return kTokenSelectNamespace;
}

} // namespace earlytom

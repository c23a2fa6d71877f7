// Entry points for dynamic loading: TensorRT's and TensorRT-RTX's IPluginRegistry::loadLibrary and
// `trtexec --dynamicPlugins` call getCreators (and setLoggerFinder when present).
#include "token_select_plugin.h"

#define EARLYTOM_EXPORT __attribute__((visibility("default")))

extern "C"
{

EARLYTOM_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* /*finder*/) {}

EARLYTOM_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    static earlytom::TokenSelectCreator tokenSelect;
    static nvinfer1::IPluginCreatorInterface* const creators[] = {&tokenSelect};
    nbCreators = 1;
    return creators;
}

} // extern "C"

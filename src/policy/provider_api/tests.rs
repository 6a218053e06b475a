use super::*;
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn api(path: &str) -> Option<(ProviderApi, Option<String>)> {
    from_path(path).map(|found| (found.api, found.model))
}

fn named(api: ProviderApi, model: &str) -> Option<(ProviderApi, Option<String>)> {
    Some((api, Some(model.to_string())))
}

const GENERATE: ProviderApi = ProviderApi::Gemini(GeminiMethod::GenerateContent);
const STREAM: ProviderApi = ProviderApi::Gemini(GeminiMethod::StreamGenerateContent);
const CONVERSE: ProviderApi = ProviderApi::Bedrock(BedrockOperation::Converse);

#[test]
fn bodies_name_the_model_of_openai_anthropic_and_azure_v1() {
    for path in [
        "/v1/chat/completions",
        "/v1/completions?x=1",
        "/v1/responses",
        "/v1/messages",
        "/v1/embeddings",
        "/v1/models",
        "/v1/models/gpt-4o",
        "/openai/v1/chat/completions?api-version=preview",
        "/tenants/acme/v1/chat/completions",
        "/",
        "",
    ] {
        assert_eq!(api(path), None, "{path}");
    }
}

#[test]
fn azure_deployments_name_the_deployment() {
    let azure = ProviderApi::AzureDeployment;
    assert_eq!(
        api("/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"),
        named(azure, "gpt-4o-prod")
    );
    assert_eq!(
        api("/openai/deployments/emb/embeddings"),
        named(azure, "emb")
    );
    // Behind a gateway prefix, encoded, or with a dot segment, the upstream's reading.
    assert_eq!(
        api("/azure/openai/deployments/my%2Ddeploy/completions"),
        named(azure, "my-deploy")
    );
    assert_eq!(
        api("/openai/deployments/a/../b/chat/completions"),
        named(azure, "b")
    );
    // The first deployment is the one the upstream serves.
    assert_eq!(
        api("/openai/deployments/a/openai/deployments/b/chat/completions"),
        named(azure, "a")
    );
    // Listing deployments names no operation: not a model call.
    assert_eq!(api("/openai/deployments/a"), None);
    assert_eq!(api("/openai/deployments"), None);
}

#[test]
fn gemini_paths_name_the_model_and_method() {
    assert_eq!(
        api("/v1beta/models/gemini-2.0-flash:generateContent"),
        named(GENERATE, "gemini-2.0-flash")
    );
    assert_eq!(
        api("/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"),
        named(STREAM, "gemini-2.5-pro")
    );
    assert_eq!(
        api("/v1/projects/p-1/locations/us-central1/publishers/google/models/gemini-2.0-flash-001:streamGenerateContent"),
        named(STREAM, "gemini-2.0-flash-001")
    );
    assert_eq!(
        api("/v1/projects/p/locations/global/publishers/anthropic/models/claude-3-5-haiku@20241022:rawPredict"),
        named(ProviderApi::Gemini(GeminiMethod::RawPredict), "claude-3-5-haiku@20241022")
    );
    assert_eq!(
        api("/v1/projects/p/locations/l/publishers/anthropic/models/claude-sonnet-4@20250514:streamRawPredict"),
        named(ProviderApi::Gemini(GeminiMethod::StreamRawPredict), "claude-sonnet-4@20250514")
    );
    assert_eq!(
        api("/v1beta/models/gemini-2.0-flash:countTokens"),
        named(ProviderApi::Gemini(GeminiMethod::Other), "gemini-2.0-flash")
    );
    assert_eq!(
        api("/v1beta/tunedModels/my-model-7:generateContent"),
        named(GENERATE, "tunedModels/my-model-7")
    );
    // An encoded colon is read as the upstream decodes it.
    assert_eq!(
        api("/v1beta/models/gemini-2.0-flash%3AgenerateContent"),
        named(GENERATE, "gemini-2.0-flash")
    );
    // A Vertex endpoint hides its model: the API is known, the model is not.
    assert_eq!(
        api("/v1/projects/p/locations/l/endpoints/1234:generateContent"),
        Some((GENERATE, None))
    );
    // A colon elsewhere is not a method.
    assert_eq!(api("/v1beta/models/gemini:generateContent/x"), None);
    assert_eq!(api("/v1beta/files/abc:download"), None);
}

#[test]
fn bedrock_paths_name_the_url_decoded_model_id() {
    assert_eq!(
        api("/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"),
        named(CONVERSE, "anthropic.claude-3-haiku-20240307-v1:0")
    );
    assert_eq!(
        api("/model/us.anthropic.claude-3-5-haiku-20241022-v1:0/converse-stream"),
        named(
            ProviderApi::Bedrock(BedrockOperation::ConverseStream),
            "us.anthropic.claude-3-5-haiku-20241022-v1:0"
        )
    );
    assert_eq!(
        api("/model/amazon.nova-lite-v1%3A0/invoke"),
        named(
            ProviderApi::Bedrock(BedrockOperation::Invoke),
            "amazon.nova-lite-v1:0"
        )
    );
    assert_eq!(
        api("/model/m/invoke-with-response-stream"),
        named(
            ProviderApi::Bedrock(BedrockOperation::InvokeWithResponseStream),
            "m"
        )
    );
    assert_eq!(
        api("/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"),
        named(
            CONVERSE,
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0"
        )
    );
    // Lower-case escapes, a gateway prefix, dot segments: as the upstream resolves them.
    assert_eq!(api("/bedrock/model/a%3a0/converse"), named(CONVERSE, "a:0"));
    assert_eq!(api("/model/a/x/../converse"), named(CONVERSE, "a"));
    assert_eq!(api("/model/a/%2E%2E/b/converse"), named(CONVERSE, "b"));
    assert_eq!(api("/model/x/../a/./converse"), named(CONVERSE, "a"));
    assert_eq!(api("//model//a//converse"), named(CONVERSE, "a"));
    // Other operations, or no model.
    assert_eq!(api("/model/a/count-tokens"), None);
    assert_eq!(api("/async-invoke"), None);
    assert_eq!(api("/model/converse"), None);
}

#[test]
fn an_unreadable_model_is_none_never_a_guess() {
    for path in [
        "/model/a%ZZ/converse",
        "/model/a%3/converse",
        "/model/%FF%FE/converse",
        "/model/a%20b/converse",
        "/model/a%0Ab/converse",
        "/openai/deployments/%E2%82%AC/chat/completions",
    ] {
        let found = from_path(path).unwrap_or_else(|| panic!("{path}: API not recognised"));
        assert_eq!(found.model, None, "{path}");
    }
    let long = format!("/model/{}/converse", "m".repeat(257));
    assert_eq!(api(&long), Some((CONVERSE, None)));
    let longest = format!("/model/{}/converse", "m".repeat(256));
    assert_eq!(api(&longest), named(CONVERSE, &"m".repeat(256)));
}

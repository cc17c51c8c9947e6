"""The concrete chat models (:class:`icm.llm.ChatModel`): an OpenAI-compatible server
(:mod:`.openai`) and llama.cpp in-process (:mod:`.llama_cpp`)."""

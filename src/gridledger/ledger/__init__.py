"""The replicated state machine: transactions, blocks, state, execution, modules."""

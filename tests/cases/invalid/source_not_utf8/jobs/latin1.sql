select 'café' as drink

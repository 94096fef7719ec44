[
  inputs: [
    "{mix,.formatter}.exs",
    "{config,lib,dev,test,bench}/**/*.{ex,exs}"
  ]
]
